"""The client's call figures (for metrics): calls, throttling, errors, retries, re-authentication."""

from __future__ import annotations

from profile_sync.adobe_target.auth import StaticToken
from profile_sync_local.emulator import DEFAULT_PROFILE_TOKEN
from tests.contract.conftest import batch


def test_stats_count_each_attempt_and_start_again_after_take(client, emulator):
    emulator.queue_faults("batchUpdate", "503", "500")
    emulator.queue_faults("batchStatus", "drop")

    client.batch_status(client.submit_batch(batch("1,x,y")).status_url)

    taken = client.stats.take()
    assert {k: taken[k] for k in ("calls", "throttled", "server_errors", "transport_errors", "retries")} == {
        "calls": 5,
        "throttled": 1,
        "server_errors": 1,
        "transport_errors": 1,
        "retries": 3,
    }
    assert len(taken["latencies_ms"]) == 4  # the dropped connection had no answer to time
    assert all(latency >= 0 for latency in taken["latencies_ms"])
    assert client.stats.take() == {
        "calls": 0,
        "throttled": 0,
        "server_errors": 0,
        "transport_errors": 0,
        "retries": 0,
        "reauthentications": 0,
        "latencies_ms": [],
    }


def test_stats_count_a_reauthentication(make_client, emulator):
    emulator.configure(require_auth=True)
    tokens = iter(["revoked-token", DEFAULT_PROFILE_TOKEN])
    client = make_client(auth=StaticToken(lambda: next(tokens)))

    client.submit_batch(batch("1,x,y"))

    taken = client.stats.take()
    assert taken["reauthentications"] == 1
    assert taken["calls"] == 2
