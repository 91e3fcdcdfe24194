"""Profile fetch (/rest/v1/profiles/...) over HTTP: what a landing check can and cannot see.

The emulator answers with what its batches and single updates applied, and no kinder than Target:
a batch's values appear only once it is complete (and, with visibility_seconds, only some time
after), rows it loses (lose_share) were reported successful and never appear.
"""

from __future__ import annotations

import argparse

import pytest
import requests

from profile_sync.adobe_target.errors import TargetAuthError
from profile_sync_local.emulator import (
    DEFAULT_PROFILE_TOKEN,
    EmulatorConfig,
    TargetEmulator,
    add_arguments,
    config_from_args,
    run_from_args,
)
from tests.contract.conftest import CLIENT, batch


def fetch(emulator: TargetEmulator, path: str, **headers: str) -> requests.Response:
    return requests.get(f"{emulator.url}/rest/v1/profiles/{path}", headers=headers, timeout=5)


def test_the_answer_takes_adobes_documented_shape(client, emulator, clock):
    client.submit_batch(batch("crm-1,gold,S%C3%A3o%20Paulo", header="thirdPartyId,tier,city"))
    answer = fetch(emulator, f"thirdPartyId/crm-1?client={CLIENT}")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    at = "2023-11-14T22:13:20.000Z"  # the fake clock's start, in the ISO form Target uses
    assert answer.json() == {
        "client": CLIENT,
        "visitorId": "crm-1",  # a string, as in Adobe's sample (not an object)
        "modifiedAt": at,
        "profileAttributes": {
            "tier": {"value": "gold", "modifiedAt": at},
            "city": {"value": "São Paulo", "modifiedAt": at},
        },
    }


def test_unknown_profiles_client_and_id_type_are_404_in_targets_words(client, emulator):
    client.submit_batch(batch("crm-1,gold", header="thirdPartyId,tier"))
    missing = fetch(emulator, f"thirdPartyId/crm-2?client={CLIENT}")
    assert (missing.status_code, missing.json()) == (
        404,
        {"status": 404, "message": f"No profile found for client {CLIENT} with third party id=crm-2"},
    )
    assert fetch(emulator, "thirdPartyId/crm-1?client=other").status_code == 404  # another client's
    assert fetch(emulator, f"crm-1?client={CLIENT}").status_code == 404  # a thirdPartyId is no tntId
    no_client = fetch(emulator, "thirdPartyId/crm-1")
    assert no_client.status_code == 400
    assert client.fetch_profile("thirdPartyId", "crm-2") is None
    assert client.fetch_profile("thirdPartyId", "crm-1")["profileAttributes"]["tier"]["value"] == "gold"


def test_ids_are_url_decoded_once(client, emulator):
    emulator.store.put(CLIENT, "pcId", "a b%c", {"tier": "x"})
    assert fetch(emulator, f"a%20b%25c?client={CLIENT}").json()["visitorId"] == "a b%c"
    assert client.fetch_profile("pcId", "a b%c")["profileAttributes"] == {
        "tier": {"value": "x", "modifiedAt": "2023-11-14T22:13:20.000Z"}
    }


def test_a_batch_shows_only_once_it_is_complete(client, emulator, clock):
    emulator.configure(polls_until_complete=1)
    emulator.store.put(CLIENT, "pcId", "1", {"a": "old"})
    submitted = client.submit_batch(batch("1,new,b1", "2,x,"))
    clock.advance(3600)
    assert client.fetch_profile("pcId", "1")["profileAttributes"]["a"]["value"] == "old"
    assert client.fetch_profile("pcId", "2") is None
    assert client.batch_status(submitted.status_url).state == "incomplete"
    assert client.batch_status(submitted.status_url).state == "complete"
    one = client.fetch_profile("pcId", "1")
    assert {k: v["value"] for k, v in one["profileAttributes"].items()} == {"a": "new", "b": "b1"}
    assert client.fetch_profile("pcId", "2")["profileAttributes"] == {
        "a": {"value": "x", "modifiedAt": one["modifiedAt"]}  # an empty value created nothing
    }


def test_a_time_based_batch_shows_once_its_time_is_up_even_unpolled(client, emulator, clock):
    emulator.configure(seconds_until_complete=600)
    client.submit_batch(batch("1,x"))
    clock.advance(599)
    assert client.fetch_profile("pcId", "1") is None
    clock.advance(1)
    assert client.fetch_profile("pcId", "1")["profileAttributes"]["a"]["value"] == "x"


def test_visibility_delay_hides_applied_values_for_a_while(client, emulator, clock):
    emulator.configure(visibility_seconds=300)
    emulator.store.put(CLIENT, "pcId", "1", {"a": "old"})
    submitted = client.submit_batch(batch("1,new", "2,x"))
    status = client.batch_status(submitted.status_url, details=True)
    assert (status.state, status.successful) == ("complete", 2)  # complete, and not yet visible
    clock.advance(299)
    assert client.fetch_profile("pcId", "1")["profileAttributes"]["a"]["value"] == "old"
    assert client.fetch_profile("pcId", "2") is None
    clock.advance(1)
    assert client.fetch_profile("pcId", "1")["profileAttributes"]["a"]["value"] == "new"
    assert client.fetch_profile("pcId", "2")["modifiedAt"] == "2023-11-14T22:18:20.000Z"

    client.single_update("pcId", "1", {"a": "single"})
    assert client.fetch_profile("pcId", "1")["profileAttributes"]["a"]["value"] == "new"
    clock.advance(300)
    assert client.fetch_profile("pcId", "1")["profileAttributes"]["a"]["value"] == "single"


def test_lost_rows_are_reported_successful_and_never_show(client, emulator):
    emulator.configure(lose_share=0.5, seed=3)
    ids = [f"crm-{i}" for i in range(40)]
    submitted = client.submit_batch(batch(*(f"{i},gold" for i in ids), header="thirdPartyId,tier"))
    status = client.batch_status(submitted.status_url, details=True)
    assert (status.state, status.successful, status.failed) == ("complete", 40, 0)
    assert status.profiles == []
    lost = emulator.lost_updates(CLIENT)
    assert 5 < len(lost) < 35
    assert {visitor_id for _, visitor_id in lost} < set(ids)
    for visitor_id in ids:
        profile = client.fetch_profile("thirdPartyId", visitor_id)
        assert (profile is None) == (("thirdPartyId", visitor_id) in lost)


def test_a_lost_update_of_an_existing_profile_keeps_the_old_values(client, emulator):
    emulator.store.put(CLIENT, "pcId", "1", {"a": "old"})
    emulator.configure(lose_share=1.0)
    client.submit_batch(batch("1,new"))
    client.single_update("pcId", "1", {"a": "single"})
    assert client.fetch_profile("pcId", "1")["profileAttributes"]["a"]["value"] == "old"
    assert emulator.lost_updates(CLIENT) == [("pcId", "1"), ("pcId", "1")]
    emulator.configure(lose_share=0.0)
    client.single_update("pcId", "1", {"a": "single"})
    assert client.fetch_profile("pcId", "1")["profileAttributes"]["a"]["value"] == "single"


def test_failed_rows_are_not_lost_rows(client, emulator):
    emulator.configure(lose_share=1.0, fail_ids={"2"})
    submitted = client.submit_batch(batch("1,x", "2,y"))
    status = client.batch_status(submitted.status_url, details=True)
    assert (status.successful, status.failed, status.profiles) == (1, 1, [("2", "failed")])
    assert emulator.lost_updates(CLIENT) == [("pcId", "1")]


def test_fetch_needs_the_clients_own_token_when_auth_is_required(client, emulator):
    emulator.store.put(CLIENT, "pcId", "1", {"a": "x"})
    emulator.configure(require_auth=True, client_tokens=(("other", "other-token"),))
    assert fetch(emulator, f"1?client={CLIENT}").status_code == 401
    assert fetch(emulator, f"1?client={CLIENT}", Authorization="Bearer wrong").status_code == 401
    ok = fetch(emulator, f"1?client={CLIENT}", Authorization=f"Bearer {DEFAULT_PROFILE_TOKEN}")
    assert ok.status_code == 200
    refused = fetch(emulator, "1?client=other", Authorization=f"Bearer {DEFAULT_PROFILE_TOKEN}")
    assert refused.status_code == 401
    with pytest.raises(TargetAuthError):
        client.fetch_profile("pcId", "1")


def test_fetch_never_logs_the_id_it_was_asked_for(client, emulator):
    client.fetch_profile("thirdPartyId", "secret-visitor")
    entry = emulator.requests[-1]
    assert entry["endpoint"] == "profiles"
    assert "secret-visitor" not in repr({k: v for k, v in entry.items() if k != "path"})


def test_switches_in_the_cli():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--lose-share", "0.25", "--visibility-seconds", "90"]))
    assert (config.lose_share, config.visibility_seconds) == (0.25, 90.0)
    defaults = config_from_args(parser.parse_args([]))
    assert (defaults.lose_share, defaults.visibility_seconds) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("switch", "message"),
    [("--lose-share=1.5", "lose_share must be between 0 and 1"), ("--visibility-seconds=-1", "0 or more")],
)
def test_a_bad_switch_is_one_line_and_exit_2(capsys, switch, message):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_from_args(parser.parse_args([switch])) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match=message):
        EmulatorConfig(**{switch[2:].split("=")[0].replace("-", "_"): float(switch.split("=")[1])})
