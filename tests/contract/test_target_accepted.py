"""A batch Target may have accepted is never POSTed again; failures to connect are retried.

Over real HTTP against the emulator's accept_* faults: Target took the batch, then the answer went
wrong (no answer, a stall past the client's read timeout, a body that isn't XML, a cut-off body).
"""

from __future__ import annotations

import socket

import pytest

from profile_sync.adobe_target.client import RetryPolicy, TargetClient
from profile_sync.adobe_target.errors import TargetMaybeAccepted, TargetRejected, TargetRetryLater
from profile_sync_local.emulator import batch_digest
from tests.contract.conftest import CLIENT, batch


@pytest.mark.parametrize("fault", ["accept_drop", "accept_stall", "accept_garbage"])
def test_accepted_then_no_usable_answer_is_maybe_accepted_and_sent_once(make_client, emulator, clock, fault):
    emulator.configure(slow_fault_seconds=1.0)
    emulator.queue_faults("batchUpdate", fault)
    client = make_client(timeout=0.3)
    body = batch("1,x", "2,y")
    with pytest.raises(TargetMaybeAccepted) as caught:
        client.submit_batch(body)
    error = caught.value
    assert (error.attempts, error.status_url) == (1, "")
    assert "may have accepted" in str(error) and "not sent again" in str(error)
    assert emulator.calls["batchUpdate"] == 1 and clock.sleeps == []
    assert emulator.received_batches() == {batch_digest(body): 1}
    assert emulator.state.received_batches() == {batch_digest(body): 1}
    # Target applies it although the client never heard back.
    emulator._advance_all()
    assert emulator.store.get(CLIENT, "pcId", "2") == {"a": "y"}


def test_a_cut_off_answer_still_gives_its_status_url(client, emulator):
    emulator.queue_faults("batchUpdate", "accept_truncated")
    body = batch("1,x")
    result = client.submit_batch(body)
    assert result.batch_id.startswith(f"{CLIENT}-") and result.attempts == 1
    assert client.batch_status(result.status_url).state == "complete"
    assert emulator.received_batches() == {batch_digest(body): 1}


def test_a_drop_after_the_body_went_out_is_not_resent_but_a_status_call_is(client, emulator):
    emulator.queue_faults("batchUpdate", "drop")
    with pytest.raises(TargetMaybeAccepted, match="no answer came back"):
        client.submit_batch(batch("1,x"))
    assert emulator.calls["batchUpdate"] == 1
    url = client.submit_batch(batch("2,x")).status_url
    emulator.queue_faults("batchStatus", "drop", "drop")  # GETs are safe to repeat
    assert client.batch_status(url).attempts == 3


def test_success_true_without_a_status_url_is_maybe_accepted(client, emulator, monkeypatch):
    # Target said it took the batch but gave no URL to follow: never resend, never call it refused.
    original = type(client)._submit_result

    def without_url(self, resp, attempts, version):
        resp._content = b"<response> <success>true</success> <batchStatus></batchStatus> </response>"
        return original(self, resp, attempts, version)

    monkeypatch.setattr(type(client), "_submit_result", without_url)
    with pytest.raises(TargetMaybeAccepted, match="success without a status URL"):
        client.submit_batch(batch("1,x"))
    assert emulator.calls["batchUpdate"] == 1


def test_explicit_success_false_is_a_refusal_not_a_maybe(client, emulator):
    with pytest.raises(TargetRejected, match="refused the batch") as caught:
        client.submit_batch(batch("1,x", header="ecid,a"))
    assert not isinstance(caught.value, TargetMaybeAccepted)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_retried_and_ends_retry_later(clock):
    client = TargetClient(
        f"http://127.0.0.1:{_closed_port()}",
        CLIENT,
        retry=RetryPolicy.fast(),
        sleep=clock.sleep,
        max_attempts=3,
    )
    with pytest.raises(TargetRetryLater) as caught:
        client.submit_batch(batch("1,x"))
    assert caught.value.attempts == 3 and len(clock.sleeps) == 2
    assert str(caught.value).startswith("batchUpdate: no answer (ConnectionError) to all 3 attempts")


# ---- where the token may go -------------------------------------------------------------------


@pytest.mark.parametrize(
    "base",
    [
        "https://status.example.com",  # a foreign host
        "https://tt.omtrdc.net.example.com",  # looks like Target, is not
        "http://localhost:1",  # loopback, but not the configured base host
        "http://10.0.0.8",
    ],
)
def test_a_status_url_on_a_foreign_host_is_refused_before_a_byte_is_sent(client, emulator, base):
    emulator.configure(status_url_base=base)
    result = client.submit_batch(batch("1,x"))  # accepted: the URL only matters when followed
    with pytest.raises(TargetRejected, match="refusing") as caught:
        client.batch_status(result.status_url)
    assert emulator.calls["batchStatus"] == 0
    assert "batchId" not in str(caught.value)  # hosts only, never the query


def test_target_edge_hosts_are_allowed_over_https(client, monkeypatch):
    seen = []

    def fake_request(method, url, **kwargs):
        seen.append(url)
        raise AssertionError("stop here")

    monkeypatch.setattr(client.session, "request", fake_request)
    for url in (
        "http://mboxedge19.tt.omtrdc.net/m2/demo/v2/profile/batchStatus?batchId=demo-1845664501&m2Node=00",
        "https://demo.tt.omtrdc.net/m2/demo/profile/batchStatus?batchId=1",
    ):
        with pytest.raises(AssertionError):
            client.batch_status(url)
    assert seen == [
        "https://mboxedge19.tt.omtrdc.net/m2/demo/v2/profile/batchStatus?batchId=demo-1845664501"
        "&m2Node=00&showDetails=true",
        "https://demo.tt.omtrdc.net/m2/demo/profile/batchStatus?batchId=1&showDetails=true",
    ]
