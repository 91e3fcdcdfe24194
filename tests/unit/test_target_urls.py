"""URL rules and the back-off policy."""

from __future__ import annotations

import random

import pytest

from profile_sync.settings import Settings
from profile_sync.target.client import RetryPolicy, SubmitResult, TargetClient
from profile_sync.target.errors import TargetRejected, TargetRetryLater
from profile_sync.target.urls import is_loopback_host, require_secure, upgrade_to_https, with_show_details

STATUS = "http://mboxedge45.tt.omtrdc.net/m2/demo/profile/batchStatus?batchId=demo-1701473848678-13029383"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (STATUS, STATUS + "&showDetails=true"),
        (STATUS + "&m2Node=00", STATUS + "&m2Node=00&showDetails=true"),
        (STATUS + "&showDetails=true", STATUS + "&showDetails=true"),
        (
            "https://h/m2/demo/v2/profile/batchStatus",
            "https://h/m2/demo/v2/profile/batchStatus?showDetails=true",
        ),
        ("https://h/s?", "https://h/s?showDetails=true"),
        ("https://h/s?a=1&", "https://h/s?a=1&showDetails=true"),
        ("https://h/s?a=1#frag", "https://h/s?a=1&showDetails=true#frag"),
    ],
)
def test_show_details_is_appended_as_is(url, expected):
    assert with_show_details(url) == expected


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "demo.tt.omtrdc.net", "localhost.example.com", "", None, "::2"])
def test_not_loopback(host):
    assert not is_loopback_host(host)


def test_require_secure():
    assert require_secure("https://demo.tt.omtrdc.net") == "https://demo.tt.omtrdc.net"
    assert require_secure("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"
    for bad in ("http://demo.tt.omtrdc.net", "ftp://127.0.0.1/x", "/relative", "http://10.0.0.1/"):
        with pytest.raises(TargetRejected):
            require_secure(bad)


def test_rejection_messages_leave_queries_out():
    with pytest.raises(TargetRejected) as caught:
        require_secure("http://edge.example.com/x?mboxPC=secret-visitor")
    assert "secret-visitor" not in str(caught.value)


def test_status_urls_are_upgraded_only_in_their_scheme():
    assert upgrade_to_https(STATUS) == "https" + STATUS[4:]
    assert upgrade_to_https("http://127.0.0.1:9/m2/x?batchId=1") == "http://127.0.0.1:9/m2/x?batchId=1"


def test_full_jitter_stays_within_the_exponential_ceiling():
    policy = RetryPolicy(throttled_base=60, max_delay=300, rng=random.Random(1))
    for attempt in range(1, 8):
        delays = [policy.delay(60, attempt) for _ in range(200)]
        ceiling = min(300, 60 * 2 ** (attempt - 1))
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
    assert policy.delay(1, 1, retry_after=120) == 120  # Retry-After is a floor
    assert policy.delay(1, 1, retry_after=9999) == 300  # capped


def test_client_urls_and_settings():
    client = TargetClient.from_settings(Settings(), "acme")
    assert client.batch_url() == "https://acme.tt.omtrdc.net/m2/acme/v2/profile/batchUpdate"
    assert client.batch_url("v1") == "https://acme.tt.omtrdc.net/m2/acme/profile/batchUpdate"
    assert client.update_url() == "https://acme.tt.omtrdc.net/m2/acme/profile/update"
    assert (client.timeout, client.max_attempts, client.single_get_max_bytes) == (30.0, 5, 8192)
    with pytest.raises(ValueError, match="version"):
        client.batch_url("v3")
    with pytest.raises(ValueError, match="client_code"):
        TargetClient("https://x.tt.omtrdc.net", "a/b")


def test_submit_result_batch_id():
    assert SubmitResult(STATUS + "&m2Node=00", "", 1).batch_id == "demo-1701473848678-13029383"


def test_errors_carry_status_attempts_and_a_suggestion():
    exc = TargetRetryLater("throttled", status=503, attempts=5, retry_after_seconds=60)
    assert str(exc) == "throttled | HTTP 503 | after 5 attempt(s)"
    assert exc.retry_after_seconds == 60
