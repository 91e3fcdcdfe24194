"""Retries, timeouts, dropped connections, HTTPS rules and authentication, over real HTTP."""

from __future__ import annotations

import logging

import pytest

from profile_sync.adobe_target.auth import NoAuth, OAuthServerToServer, StaticToken
from profile_sync.adobe_target.client import RetryPolicy, TargetClient
from profile_sync.adobe_target.errors import (
    TargetAuthError,
    TargetMaybeAccepted,
    TargetRejected,
    TargetRetryLater,
)
from profile_sync_local.emulator import DEFAULT_PROFILE_TOKEN, batch_digest
from tests.contract.conftest import CLIENT, batch


@pytest.mark.parametrize("fault", ["503", "429", "500"])
def test_retries_then_succeeds(client, emulator, clock, fault):
    emulator.queue_faults("batchUpdate", fault, fault)
    result = client.submit_batch(batch("1,x"))
    assert result.attempts == 3
    assert len(clock.sleeps) == 2
    assert emulator.calls["batchUpdate"] == 3
    assert emulator.store.get(CLIENT, "pcId", "1") == {"a": "x"}


def test_status_calls_retry_too(client, emulator):
    url = client.submit_batch(batch("1,x")).status_url
    emulator.queue_faults("batchStatus", "503", "500", "drop")
    status = client.batch_status(url)
    assert (status.state, status.attempts) == ("complete", 4)


def test_gives_up_with_retry_later_after_max_attempts(make_client, emulator, clock):
    client = make_client(max_attempts=3)
    emulator.queue_faults("batchUpdate", "503", "503", "503", "503")
    with pytest.raises(TargetRetryLater) as caught:
        client.submit_batch(batch("1,x"))
    assert (caught.value.status, caught.value.attempts) == (503, 3)
    assert caught.value.retry_after_seconds == RetryPolicy.fast().throttled_base
    assert emulator.calls["batchUpdate"] == 3
    assert len(clock.sleeps) == 2  # no pointless sleep after the last attempt


def test_backoff_grows_with_full_jitter_and_503_waits_longest(make_client, emulator, clock):
    policy = RetryPolicy(
        throttled_base=60, too_many_base=10, server_error_base=2, transport_base=2, max_delay=900
    )
    client = make_client(retry=policy, max_attempts=4)
    emulator.queue_faults("batchUpdate", "503", "503", "503")
    client.submit_batch(batch("1,x"))
    assert [0 <= s <= 60 * 2**i for i, s in enumerate(clock.sleeps)] == [True, True, True]
    assert sum(clock.sleeps) > 10  # 503 back-off is in minutes, not milliseconds


def test_connection_errors_exhausted_have_no_status(make_client, emulator):
    client = make_client(max_attempts=2)
    emulator.queue_faults("batchStatus", "drop", "drop")
    with pytest.raises(TargetRetryLater) as caught:
        client.batch_status(f"{emulator.url}/m2/{CLIENT}/profile/batchStatus?batchId=x")
    assert caught.value.status is None


def test_every_attempt_is_bounded_by_the_timeout(make_client, emulator):
    client = make_client(timeout=0.2)
    url = client.submit_batch(batch("1,x")).status_url
    emulator.configure(slow_fault_seconds=1.0)
    emulator.queue_faults("batchStatus", "slow")
    assert client.batch_status(url).attempts == 2


def test_slow_answers_within_the_timeout_are_fine(make_client, emulator):
    emulator.configure(delay_seconds=0.05)
    assert make_client(timeout=2).submit_batch(batch("1,x")).attempts == 1


def test_error_and_drop_shares_are_survivable_and_no_batch_is_sent_twice(make_client, emulator):
    emulator.configure(error_500_share=0.3, drop_share=0.2, seed=3)
    client = make_client(max_attempts=10)
    maybe = []
    for i in range(20):
        try:
            client.batch_status(client.submit_batch(batch(f"{i},x")).status_url)
        except TargetMaybeAccepted:
            maybe.append(i)  # dropped after the body went out: not sent again
    assert 0 < len(maybe) < 20
    assert emulator.calls["batchUpdate"] > 20  # the 500s were retried
    # Every batch reached Target at most once for processing; a dropped one was never POSTed again.
    assert emulator.resent_batches() == {}
    for i in maybe:
        digest = batch_digest(batch(f"{i},x"))
        answers = [r["status"] for r in emulator.requests if r.get("digest") == digest]
        assert answers[-1] == 0 and set(answers[:-1]) <= {500}  # 500s retried, the drop was the last
    assert emulator.store.count(CLIENT) == 20 - len(maybe)


def test_4xx_fails_at_once(make_client, emulator, clock):
    emulator.configure(reject_http_status=400)
    client = make_client()
    with pytest.raises(TargetRejected) as caught:
        client.submit_batch(batch("1,x", header="bad,a"))
    assert (caught.value.status, caught.value.attempts) == (400, 1)
    # A client allowing bigger single updates than Target does: Target's 413 is final too.
    client = make_client(single_post_max_bytes=200_000)
    with pytest.raises(TargetRejected) as caught:
        client.single_update("pcId", "1", {"a": "x" * 70_000})
    assert (caught.value.status, caught.value.attempts) == (413, 1)
    assert clock.sleeps == []


def test_https_only_except_loopback():
    with pytest.raises(TargetRejected, match="non-HTTPS"):
        TargetClient("http://demo.tt.omtrdc.net", CLIENT)
    for url in ("http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1", "http://127.8.9.10:1"):
        TargetClient(url, CLIENT)
    TargetClient("https://demo.tt.omtrdc.net", CLIENT)  # constructing sends nothing


def test_status_url_on_a_plain_http_edge_host_is_upgraded_not_sent_in_clear(client, monkeypatch):
    seen = []

    def fake_request(method, url, **kwargs):
        seen.append(url)
        raise AssertionError("stop here")

    monkeypatch.setattr(client.session, "request", fake_request)
    with pytest.raises(AssertionError):
        client.batch_status("http://mboxedge45.tt.omtrdc.net/m2/demo/profile/batchStatus?batchId=demo-1-2")
    assert seen == [
        "https://mboxedge45.tt.omtrdc.net/m2/demo/profile/batchStatus?batchId=demo-1-2&showDetails=true"
    ]


# Authentication -------------------------------------------------------------------------------


def test_auth_required_without_a_token_is_an_auth_error(client, emulator):
    emulator.configure(require_auth=True)
    with pytest.raises(TargetAuthError) as caught:
        client.submit_batch(batch("1,x"))
    assert caught.value.status == 401
    assert emulator.calls["batchUpdate"] == 1  # nothing to re-mint with NoAuth


def test_static_token_is_sent_as_bearer(make_client, emulator):
    emulator.configure(require_auth=True, auth_failure_status=403)
    client = make_client(auth=StaticToken(lambda: {"profile_token": DEFAULT_PROFILE_TOKEN}))
    client.submit_batch(batch("1,x"))
    assert emulator.requests[-1]["authorized"]


def test_revoked_static_token_is_reloaded_once(make_client, emulator):
    emulator.configure(require_auth=True)
    secret = {"profile_token": DEFAULT_PROFILE_TOKEN}
    loads = []

    def loader():
        loads.append(1)
        return dict(secret)

    client = make_client(auth=StaticToken(loader))
    url = client.submit_batch(batch("1,x")).status_url
    # An admin generates a new token in Target and stores it in the secret.
    new = emulator.issue_token()
    secret["profile_token"] = new
    assert client.batch_status(url).state == "complete"
    assert len(loads) == 2
    # Revoked and not replaced: one re-read, then an auth error.
    emulator.revoke_token()
    with pytest.raises(TargetAuthError) as caught:
        client.batch_status(url)
    assert len(loads) == 3
    assert new not in str(caught.value) and new not in repr(client.auth)


def test_oauth_mints_ims_then_profile_token_and_caches_it(make_client, emulator, clock):
    emulator.configure(require_auth=True, valid_tokens=set())
    auth = OAuthServerToServer(emulator.oauth_secret, clock=clock.time)
    client = make_client(auth=auth)
    for i in range(3):
        client.submit_batch(batch(f"{i},x"))
    assert auth.mint_count == 1
    assert (emulator.calls["ims"], emulator.calls["token"]) == (1, 2)  # GET found none, POST made one
    # Cached until shortly before expiry, then minted again (GET returns the current token).
    clock.advance(emulator.config.profile_token_ttl - 200)
    client.submit_batch(batch("9,x"))
    assert auth.mint_count == 2
    assert (emulator.calls["ims"], emulator.calls["token"]) == (2, 3)


def test_oauth_remints_once_when_target_refuses_the_token(make_client, emulator, clock):
    emulator.configure(require_auth=True)
    auth = OAuthServerToServer(emulator.oauth_secret, clock=clock.time)
    client = make_client(auth=auth)
    url = client.submit_batch(batch("1,x")).status_url
    assert auth.mint_count == 1 and emulator.calls["token"] == 1  # GET returned the existing token

    emulator.revoke_token()  # e.g. someone generated a new token elsewhere
    assert client.batch_status(url).state == "complete"
    assert auth.mint_count == 2

    # Refused although Target still lists it: GET would hand it back, so the client POSTs a new one.
    emulator.queue_faults("batchStatus", "401")
    before = emulator.config.valid_tokens
    assert client.batch_status(url).state == "complete"
    assert emulator.config.valid_tokens != before
    assert auth.mint_count == 3


def test_oauth_with_bad_credentials_is_an_auth_error(make_client, emulator):
    emulator.configure(require_auth=True)
    secret = {**emulator.oauth_secret(), "client_secret": "wrong"}
    client = make_client(auth=OAuthServerToServer(lambda: secret))
    with pytest.raises(TargetAuthError, match="IMS"):
        client.submit_batch(batch("1,x"))
    assert emulator.calls["batchUpdate"] == 0


def test_oauth_refuses_non_https_token_endpoints():
    auth = OAuthServerToServer(
        lambda: {"client_id": "c", "client_secret": "s", "tenant": "t", "ims_url": "http://ims.example.com/x"}
    )
    with pytest.raises(TargetRejected, match="non-HTTPS"):
        auth.token()


def test_tokens_never_reach_logs_or_reprs(make_client, emulator, clock, caplog):
    caplog.set_level(logging.DEBUG)
    emulator.configure(require_auth=True, valid_tokens=set())
    auth = OAuthServerToServer(emulator.oauth_secret, clock=clock.time)
    client = make_client(auth=auth)
    emulator.queue_faults("batchUpdate", "503")
    result = client.submit_batch(batch("1,x"))
    status = client.batch_status(result.status_url)
    token = auth.token()
    assert "target call retryable" in caplog.text  # the logs were captured: the check below means something
    for text in (caplog.text, repr(auth), repr(client), repr(result), repr(status), str(NoAuth())):
        assert token not in text
        assert "ims-" not in text
