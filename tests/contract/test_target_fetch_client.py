"""The Target client's profile fetch against the emulator: ids, answers, retries, auth, rate slots."""

from __future__ import annotations

import pytest

from profile_sync.adobe_target.auth import StaticToken
from profile_sync.adobe_target.client import TargetClient
from profile_sync.adobe_target.errors import TargetAuthError, TargetRejected, TargetRetryLater
from profile_sync.adobe_target.ratelimit import WindowedLimiter
from profile_sync_local.emulator import DEFAULT_PROFILE_TOKEN
from tests.contract.conftest import CLIENT


def test_fetch_by_third_party_id_round_trips_encoded_ids_and_values(client, emulator):
    # An id with a space, a non-ASCII letter and an encoded comma: the path segment is percent-encoded.
    client.submit_batch(b"batch=thirdPartyId,city,note\ncrm%201%C3%BC%2C,S%C3%A3o%20Paulo,a%26b\n")
    profile = client.fetch_profile("thirdPartyId", "crm 1ü,")
    assert profile is not None
    assert {name: a["value"] for name, a in profile["profileAttributes"].items()} == {
        "city": "São Paulo",
        "note": "a&b",
    }
    sent = emulator.requests[-1]
    assert (sent["method"], sent["path"]) == ("GET", "/rest/v1/profiles/thirdPartyId/crm%201%C3%BC%2C")
    assert sent["query_keys"] == ["client"]


def test_fetch_by_pc_id_uses_the_tnt_id_path(client, emulator):
    client.submit_batch(b"batch=pcId,a\n123-abc,x\n")
    assert client.fetch_profile("pcId", "123-abc")["profileAttributes"]["a"]["value"] == "x"
    assert emulator.requests[-1]["path"] == "/rest/v1/profiles/123-abc"
    assert client.fetch_profile("pcId", "456") is None


def test_a_404_without_targets_message_is_not_read_as_no_profile(make_client, emulator):
    # A wrong base path answers 404 too, but not Target's JSON: not to be read as "not yet visible".
    wrong = make_client()
    wrong.base_url = f"{emulator.url}/not-target"
    with pytest.raises(TargetRejected, match="404 without"):
        wrong.fetch_profile("thirdPartyId", "crm-1")


def test_an_answer_that_is_not_a_profile_is_refused(client, emulator):
    emulator.queue_faults("profiles", "garbage")
    with pytest.raises(TargetRejected, match="not a profile"):
        client.fetch_profile("thirdPartyId", "crm-1")


def test_server_errors_are_retried_then_left_to_the_caller(client, emulator):
    client.submit_batch(b"batch=thirdPartyId,a\ncrm-1,x\n")
    emulator.queue_faults("profiles", "500", "503", "drop")
    assert client.fetch_profile("thirdPartyId", "crm-1")["profileAttributes"]["a"]["value"] == "x"
    assert emulator.calls["profiles"] == 4
    emulator.configure(error_500_share=1.0)
    with pytest.raises(TargetRetryLater):
        client.fetch_profile("thirdPartyId", "crm-1")


def test_bad_ids_are_refused_before_a_call(client, emulator):
    for id_type, bad in (
        ("thirdPartyId", "a+b"),
        ("thirdPartyId", "a/b"),
        ("thirdPartyId", "x" * 257),
        ("pcId", ""),
        ("ecid", "1"),
    ):
        with pytest.raises(TargetRejected):
            client.fetch_profile(id_type, bad)
    assert emulator.calls["profiles"] == 0


def test_the_token_is_sent_and_a_refused_one_is_an_auth_error(make_client, emulator):
    emulator.configure(require_auth=True)
    authorised = make_client(auth=StaticToken(lambda: DEFAULT_PROFILE_TOKEN))
    assert authorised.fetch_profile("thirdPartyId", "nobody") is None
    assert emulator.requests[-1]["authorized"]
    with pytest.raises(TargetAuthError):
        make_client(auth=StaticToken(lambda: "revoked")).fetch_profile("thirdPartyId", "nobody")


class _Recorder(WindowedLimiter):
    def __init__(self) -> None:
        super().__init__(50)
        self.taken: list[float] = []

    def try_acquire(self, key: str, *, share: float = 1.0) -> float:
        self.taken.append(share)
        return 0.0


def test_fetches_take_a_rate_slot_at_the_poll_share(emulator, clock):
    limiter = _Recorder()
    client = TargetClient(emulator.url, CLIENT, limiter=limiter, sleep=clock.sleep, poll_calls_share=0.5)
    client.fetch_profile("thirdPartyId", "crm-1")
    client.submit_batch(b"batch=thirdPartyId,a\ncrm-1,x\n")
    assert limiter.taken == [0.5, 1.0]  # submits keep the whole minute, reads take their share
