"""URL rules and the back-off policy."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from profile_sync.adobe_target.client import RetryPolicy, SubmitResult, TargetClient
from profile_sync.adobe_target.errors import TargetRejected, TargetRetryLater
from profile_sync.adobe_target.urls import (
    TargetScope,
    is_loopback_host,
    require_secure,
    upgrade_to_https,
    with_show_details,
)
from profile_sync.settings import Settings

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


# ---- where the token may go (TargetScope) -----------------------------------------------------


@pytest.mark.parametrize(
    ("base", "url", "allowed"),
    [
        ("https://demo.tt.omtrdc.net", "https://demo.tt.omtrdc.net/m2/demo/v2/profile/batchUpdate", True),
        (
            "https://demo.tt.omtrdc.net",
            "https://mboxedge19.tt.omtrdc.net/m2/demo/v2/profile/batchStatus",
            True,
        ),
        ("https://DEMO.tt.omtrdc.net", "https://mboxedge19.TT.OMTRDC.NET./x", True),
        ("https://proxy.corp.example", "https://proxy.corp.example:8443/x", True),  # the base host
        ("https://proxy.corp.example", "https://mboxedge1.tt.omtrdc.net/x", True),  # Target's edges
        ("https://demo.tt.omtrdc.net", "https://evil.example.com/x", False),
        ("https://demo.tt.omtrdc.net", "https://tt.omtrdc.net.evil.example/x", False),
        ("https://demo.tt.omtrdc.net", "https://eviltt.omtrdc.net/x", False),
        ("https://demo.tt.omtrdc.net", "https://user:pw@demo.tt.omtrdc.net/x", False),
        ("https://demo.tt.omtrdc.net", "http://demo.tt.omtrdc.net/x", False),  # clear text
        ("https://demo.tt.omtrdc.net", "ftp://demo.tt.omtrdc.net/x", False),
        ("https://demo.tt.omtrdc.net", "/m2/x", False),
        ("http://127.0.0.1:9", "http://127.0.0.1:9/x", True),
        ("http://127.0.0.1:9", "http://127.0.0.1:10/x", True),  # same host
        ("http://127.0.0.1:9", "http://localhost:9/x", False),  # another host name
        ("http://127.0.0.1:9", "http://mboxedge1.tt.omtrdc.net/x", False),  # HTTP off loopback
        ("http://127.0.0.1:9", "https://mboxedge1.tt.omtrdc.net/x", True),
        ("https://localhost:9", "http://localhost:9/x", True),  # a loopback base: HTTP to loopback is fine
    ],
)
def test_scope_allows_only_the_base_host_and_target_edges(base, url, allowed):
    scope = TargetScope(base)
    if allowed:
        assert scope.check(url) == url
    else:
        with pytest.raises(TargetRejected, match="refusing") as caught:
            scope.check(url)
        assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("base", "url", "followed"),
    [
        (
            "https://demo.tt.omtrdc.net",
            "http://mboxedge19.tt.omtrdc.net/m2/demo/v2/profile/batchStatus?batchId=demo-1&m2Node=00",
            "https://mboxedge19.tt.omtrdc.net/m2/demo/v2/profile/batchStatus?batchId=demo-1&m2Node=00",
        ),
        (
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/s?batchId=1&m2Node=00",
            "http://127.0.0.1:9/s?batchId=1&m2Node=00",
        ),
        ("http://127.0.0.1:9", " http://127.0.0.1:9/s?batchId=1 \n", "http://127.0.0.1:9/s?batchId=1"),
    ],
)
def test_status_urls_follow_as_returned_with_http_upgraded(base, url, followed):
    assert TargetScope(base).status_url(url) == followed


@pytest.mark.parametrize(
    "url", ["https://evil.example.com/s?batchId=1", "http://evil.example.com/s", "http://10.1.1.1/s"]
)
def test_foreign_status_urls_are_refused_even_after_upgrade(url):
    with pytest.raises(TargetRejected, match=r"only demo\.tt\.omtrdc\.net and hosts under tt\.omtrdc\.net"):
        TargetScope("https://demo.tt.omtrdc.net").status_url(url)


@pytest.mark.parametrize(
    "base",
    ["http://demo.tt.omtrdc.net", "https://u:p@demo.tt.omtrdc.net", "https://x/?a=1", "ftp://127.0.0.1"],
)
def test_scope_refuses_bad_base_urls(base):
    with pytest.raises(TargetRejected):
        TargetScope(base)


def test_template_pattern_agrees_with_the_scope():
    text = (Path(__file__).parents[2] / "template.yaml").read_text()
    pattern = re.search(r"TargetBaseUrl:.*?AllowedPattern: '([^']+)'", text, re.DOTALL).group(1)
    for good in (
        "https://{client}.tt.omtrdc.net",
        "https://proxy.corp.example:8443",
        "http://127.0.0.1:8080",
    ):
        assert re.fullmatch(pattern, good), good
        TargetScope(good.replace("{client}", "demo"))
    for bad in ("http://demo.tt.omtrdc.net", "https://u:p@demo.tt.omtrdc.net", "http://10.0.0.1:80", "demo"):
        assert not re.fullmatch(pattern, bad), bad
