"""Which transport failures may mean Target has the batch (never resent) and which prove it doesn't.

A fake session raises what requests raises; no network.
"""

from __future__ import annotations

import pytest
import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ProtocolError

from profile_sync.adobe_target.client import RetryPolicy, TargetClient
from profile_sync.adobe_target.errors import TargetMaybeAccepted, TargetRetryLater

BODY = b"batch=pcId,a\n1,x\n"
STATUS_URL = "https://mboxedge1.tt.omtrdc.net/m2/demo/v2/profile/batchStatus?batchId=demo-1&m2Node=00"


def _refused() -> Exception:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, "/", reason))


def _connect_timeout() -> Exception:
    return requests.ConnectionError(MaxRetryError(None, "/", ConnectTimeoutError(None, "timed out")))


NEVER_SENT = {
    "refused": _refused,
    "connect timeout (wrapped)": _connect_timeout,
    "ConnectTimeout": lambda: requests.exceptions.ConnectTimeout("connect timed out"),
    "TLS handshake": lambda: requests.exceptions.SSLError("handshake failure"),
}
MAYBE_SENT = {
    "ReadTimeout": lambda: requests.exceptions.ReadTimeout("read timed out"),
    "reset": lambda: requests.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104))
    ),
    "remote disconnected": lambda: requests.ConnectionError(ProtocolError("Connection aborted.", "closed")),
    "body cut short": lambda: requests.exceptions.ChunkedEncodingError("incomplete chunk"),
    "body undecodable": lambda: requests.exceptions.ContentDecodingError("bad gzip"),
}


class Failing:
    def __init__(self, make) -> None:
        self.make = make
        self.calls = 0

    def request(self, *args, **kwargs):
        self.calls += 1
        raise self.make()


def client(session: Failing) -> TargetClient:
    return TargetClient(
        "https://demo.tt.omtrdc.net", "demo", session=session, retry=RetryPolicy.fast(), sleep=lambda s: None
    )


@pytest.mark.parametrize("make", MAYBE_SENT.values(), ids=MAYBE_SENT.keys())
def test_a_submit_that_may_have_arrived_is_never_sent_again(make):
    session = Failing(make)
    with pytest.raises(TargetMaybeAccepted) as caught:
        client(session).submit_batch(BODY)
    assert session.calls == 1 and caught.value.attempts == 1 and caught.value.status_url == ""


@pytest.mark.parametrize("make", NEVER_SENT.values(), ids=NEVER_SENT.keys())
def test_a_submit_that_never_connected_is_retried(make):
    session = Failing(make)
    with pytest.raises(TargetRetryLater) as caught:
        client(session).submit_batch(BODY)
    assert session.calls == 5 and caught.value.attempts == 5
    assert "to all 5 attempts" in str(caught.value)


@pytest.mark.parametrize("make", [*NEVER_SENT.values(), *MAYBE_SENT.values()])
def test_status_calls_are_always_retried(make):
    session = Failing(make)
    with pytest.raises(TargetRetryLater):
        client(session).batch_status(STATUS_URL)
    assert session.calls == 5
