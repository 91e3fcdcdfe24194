"""Single profile update (GET up to 8 KB, POST up to 60 KB) and profile fetch."""

from __future__ import annotations

import pytest
import requests

from profile_sync.adobe_target.errors import TargetAuthError, TargetRejected
from tests.contract.conftest import CLIENT


def test_small_update_is_a_get_and_only_updates_existing_profiles(client, emulator):
    emulator.store.put(CLIENT, "thirdPartyId", "crm-1", {"a": "old", "b": "keep"})
    result = client.single_update("thirdPartyId", "crm-1", {"a": "new value", "b": ""})
    assert (result.success, result.method, result.attempts) == (True, "GET", 1)
    assert result.message == "Request successfully submitted"
    assert emulator.store.get(CLIENT, "thirdPartyId", "crm-1") == {"a": "new value", "b": "keep"}
    assert emulator.requests[-1]["path"] == f"/m2/{CLIENT}/profile/update"

    client.single_update("pcId", "nobody", {"a": "x"})
    assert emulator.store.get(CLIENT, "pcId", "nobody") is None  # never creates
    assert emulator.calls["update.not_found"] == 1


def test_update_is_exempt_from_the_rate_limit(client, emulator):
    emulator.configure(calls_per_minute=1)
    for _ in range(5):
        client.single_update("pcId", "1", {"a": "x"})
    assert emulator.calls["update"] == 5


def test_encoded_values_are_sent_as_they_are(client, emulator):
    emulator.store.put(CLIENT, "pcId", "1")
    client.single_update("pcId", "1", {"a": "x%2Cy%26z"}, encoded=True)
    assert emulator.store.get(CLIENT, "pcId", "1") == {"a": "x,y&z"}


def test_sizes_pick_get_post_or_refuse(client, emulator):
    emulator.store.put(CLIENT, "pcId", "1")
    assert client.single_update("pcId", "1", {"a": "x" * 8000}).method == "GET"
    post = client.single_update("pcId", "1", {"a": "y" * 9000})
    assert (post.method, emulator.requests[-1]["method"]) == ("POST", "POST")
    assert emulator.requests[-1]["content_type"] == "application/x-www-form-urlencoded"
    assert emulator.store.get(CLIENT, "pcId", "1") == {"a": "y" * 9000}
    client.single_update("pcId", "1", {"a": "z" * 61_000})
    calls = emulator.calls["update"]
    with pytest.raises(TargetRejected, match="exceeds"):
        client.single_update("pcId", "1", {"a": "z" * 62_000})
    assert emulator.calls["update"] == calls  # refused before sending


def test_third_party_id_rules(client, emulator):
    for bad in ("a+b", "a/b", "x" * 257, ""):
        with pytest.raises(TargetRejected):
            client.single_update("thirdPartyId", bad, {"a": "x"})
    with pytest.raises(TargetRejected):
        client.single_update("ecid", "1", {"a": "x"})
    assert emulator.calls["update"] == 0


def test_emulator_serves_the_literal_client_path_and_enforces_sizes(emulator):
    emulator.store.put("demo", "pcId", "1")
    answer = requests.get(f"{emulator.url}/m2/client/profile/update?mboxPC=1&profile.a=1", timeout=5)
    assert "<success>true</success>" in answer.text
    assert emulator.store.get("demo", "pcId", "1") == {"a": "1"}
    emulator.store.put("acme", "pcId", "1")
    requests.get(f"{emulator.url}/m2/client/profile/update?client=acme&mboxPC=1&profile.b=2", timeout=5)
    assert emulator.store.get("acme", "pcId", "1") == {"b": "2"}
    too_long = requests.get(
        f"{emulator.url}/m2/demo/profile/update?mboxPC=1&profile.a={'x' * 8200}", timeout=5
    )
    assert too_long.status_code == 414
    too_big = requests.post(
        f"{emulator.url}/m2/demo/profile/update", data={"mboxPC": "1", "profile.a": "x" * 61_500}, timeout=5
    )
    assert too_big.status_code == 413
    no_id = requests.get(f"{emulator.url}/m2/demo/profile/update?profile.a=1", timeout=5)
    assert "<success>false</success>" in no_id.text


def test_fetch_profile_shows_what_was_applied(client, emulator):
    assert client.fetch_profile("thirdPartyId", "crm-1") is None
    missing = requests.get(f"{emulator.url}/rest/v1/profiles/thirdPartyId/crm-1?client={CLIENT}", timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {
        "status": 404,
        "message": f"No profile found for client {CLIENT} with third party id=crm-1",
    }
    client.submit_batch(b"batch=thirdPartyId,tier,city\ncrm-1,gold,S%C3%A3o%20Paulo\n")
    profile = client.fetch_profile("thirdPartyId", "crm-1")
    assert profile["client"] == CLIENT
    assert profile["profileAttributes"]["city"]["value"] == "São Paulo"
    assert {"value", "modifiedAt"} <= set(profile["profileAttributes"]["tier"])
    client.submit_batch(b"batch=pcId,a\n1,x\n")
    assert client.fetch_profile("pcId", "1")["profileAttributes"] == {
        "a": {"value": "x", "modifiedAt": profile["modifiedAt"]}
    }


def test_fetch_needs_the_token_when_auth_is_required(client, emulator):
    emulator.configure(require_auth=True)
    with pytest.raises(TargetAuthError):
        client.fetch_profile("pcId", "1")
