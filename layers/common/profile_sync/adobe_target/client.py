"""Adobe Target profile API client: bulk submit (v2/v1), batch status, single update, profile fetch.

Every call goes through _request(): the URL checked against TargetScope before a byte is sent
(where the token may go), a rate-limit slot (bulk and status calls only), bearer token, a
per-attempt timeout, bounded retries with full-jitter exponential back-off for 503/429/5xx and
transport errors, and one re-mint of the token on 401/403. What is left after that surfaces as a
typed exception (see errors.py).

A batch Target may have accepted is never POSTed again: a 2xx answer, whatever its body, and a
timeout or dropped connection after the request went out end the submit (TargetMaybeAccepted
when no status URL can be found). Only failures to connect and 503/429/5xx answers are retried.

Inside a Lambda invocation (clock.time_left() is set) no wait passes the invocation's time
minus time_margin: a back-off or rate-limit wait that would raises TargetRetryLater with the
delay, so the state machine waits instead, and each call's timeout is clamped to the time left.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote, urlencode

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from profile_sync import clock
from profile_sync.settings import TARGET_ID_MAX_CHARS

from .auth import NoAuth, TokenProvider
from .errors import TargetAuthError, TargetMaybeAccepted, TargetRejected, TargetRetryLater
from .ratelimit import NoLimit, RateLimiter
from .responses import (
    UNKNOWN,
    BatchStatus,
    extract_status_url,
    parse_batch_status,
    parse_single_update,
    parse_submit,
)
from .urls import TargetScope, with_show_details

logger = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
ID_PARAMS = {"pcId": "mboxPC", "thirdPartyId": "mbox3rdPartyId"}
SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024  # non-seekable bodies above this spill to /tmp
MIN_CALL_SECONDS = 1.0  # a call needs at least this much of the invocation's time left
# Calls that read (status polls, profile fetches) take only poll_calls_share of a minute's calls.
SHARED_ENDPOINTS = ("batchStatus", "profiles")
BatchBody = bytes | bytearray | str | os.PathLike[str] | IO[bytes]


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off bases per failure kind (seconds); the delay of attempt n is uniform(0, base * 2**(n-1))."""

    throttled_base: float = 60.0  # 503: Target's rate-limit answer, wait about a minute
    too_many_base: float = 10.0  # 429
    server_error_base: float = 2.0  # other 5xx
    transport_base: float = 2.0  # timeouts, dropped connections
    max_delay: float = 300.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, base: float, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.max_delay, base * 2 ** (attempt - 1))
        wait = self.rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait

    @classmethod
    def fast(cls, seed: int | None = 0) -> RetryPolicy:
        """Millisecond delays for tests and local runs."""
        return cls(0.01, 0.01, 0.005, 0.005, 0.05, random.Random(seed))


@dataclass(frozen=True)
class SubmitResult:
    status_url: str
    message: str
    attempts: int
    version: str = "v2"

    @property
    def batch_id(self) -> str:
        return self.status_url.partition("batchId=")[2].split("&", 1)[0]


@dataclass(frozen=True)
class SingleUpdateResult:
    success: bool
    message: str
    method: str  # GET or POST
    request_bytes: int
    attempts: int


class _Body:
    """A batch body that can be replayed for each attempt without reading it all into memory."""

    def __init__(self, body: BatchBody) -> None:
        self._path: str | None = None
        self._stream: IO[bytes] | None = None
        self._owned = False
        if isinstance(body, (bytes, bytearray)):
            self._stream, self._owned = io.BytesIO(bytes(body)), True
        elif isinstance(body, str) and not os.path.exists(body) and body.startswith("batch="):
            self._stream, self._owned = io.BytesIO(body.encode("utf-8")), True
        elif isinstance(body, (str, os.PathLike)):
            self._path = os.fspath(body)
        elif _seekable(body):
            self._stream = body
        else:
            # e.g. an S3 StreamingBody: copy once so retries can resend it.
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
            shutil.copyfileobj(body, spool, 1024 * 1024)
            spool.seek(0)
            self._stream, self._owned = spool, True
        self._start = self._stream.tell() if self._stream is not None else 0

    def open(self) -> tuple[IO[bytes], int]:
        """A stream positioned at the start of the body, and its length."""
        if self._path is not None:
            handle = open(self._path, "rb")  # noqa: SIM115 - closed by close()
            self._stream, self._owned, self._start = handle, True, 0
            self._path = None
        assert self._stream is not None
        self._stream.seek(0, io.SEEK_END)
        length = self._stream.tell() - self._start
        self._stream.seek(self._start)
        return self._stream, length

    def close(self) -> None:
        if self._owned and self._stream is not None:
            self._stream.close()


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable()) and stream.tell() >= 0
    except (AttributeError, OSError, ValueError):
        return False


class _Sized:
    """Gives requests a length so it sends Content-Length, not chunked encoding; reads from the stream."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream = stream
        self._length = length

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._stream.read(64 * 1024):
            yield chunk


class CallStats:
    """What the client saw since the last take(): calls, throttling, errors, retries, latency.

    Counts only (no ids, no bodies), for the handlers' metrics. Thread-safe: single updates run
    in parallel on one client.
    """

    FIELDS = ("calls", "throttled", "server_errors", "transport_errors", "retries", "reauthentications")
    MAX_LATENCIES = 100  # one metric line holds at most 100 values

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)
        self._latencies: list[float] = []

    def add(self, field: str, n: int = 1) -> None:
        with self._lock:
            self._counts[field] += n

    def latency(self, milliseconds: float) -> None:
        with self._lock:
            if len(self._latencies) < self.MAX_LATENCIES:
                self._latencies.append(round(milliseconds, 1))

    def take(self) -> dict[str, Any]:
        """The figures so far, and start again from zero."""
        with self._lock:
            taken = {**self._counts, "latencies_ms": self._latencies}
            self._counts = dict.fromkeys(self.FIELDS, 0)
            self._latencies = []
        return taken


class TargetClient:
    def __init__(
        self,
        base_url: str,
        client_code: str,
        *,
        auth: TokenProvider | None = None,
        limiter: RateLimiter | None = None,
        timeout: float = 30,
        max_attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        limiter_max_wait: float = 60.0,
        single_get_max_bytes: int = 8 * 1024,
        single_post_max_bytes: int = 60 * 1024,
        time_margin: float = 10.0,
        time_left: Callable[[], float | None] = clock.time_left,
        poll_calls_share: float = 1.0,
    ) -> None:
        if not client_code or "/" in client_code:
            raise ValueError("client_code must be a non-empty code without '/'")
        self.base_url = base_url.rstrip("/")
        self.scope = TargetScope(self.base_url)
        self.client_code = client_code
        self.auth: TokenProvider = auth or NoAuth()
        self.limiter: RateLimiter = limiter or NoLimit()
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.sleep = sleep
        self.session = session or requests.Session()
        self.retry = retry or RetryPolicy()
        self.limiter_max_wait = limiter_max_wait
        self.single_get_max_bytes = single_get_max_bytes
        self.single_post_max_bytes = single_post_max_bytes
        self.time_margin = time_margin
        self._time_left = time_left
        self.poll_calls_share = poll_calls_share
        self.stats = CallStats()

    @classmethod
    def from_settings(
        cls, settings: Any, client_code: str, *, auth: TokenProvider | None = None, **kwargs: Any
    ) -> TargetClient:
        """Build from profile_sync.settings.Settings (URL, timeout, attempts, single-update sizes)."""
        return cls(
            settings.target_url_for(client_code),
            client_code,
            auth=auth,
            timeout=settings.http_timeout_seconds,
            max_attempts=settings.http_max_attempts,
            single_get_max_bytes=settings.single_get_max_bytes,
            single_post_max_bytes=settings.single_post_max_bytes,
            time_margin=settings.lambda_time_margin_seconds,
            poll_calls_share=settings.poll_calls_share,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"TargetClient({self.base_url!r}, {self.client_code!r})"

    # URLs -----------------------------------------------------------------------------------

    def batch_url(self, version: str = "v2") -> str:
        if version == "v2":
            return f"{self.base_url}/m2/{self.client_code}/v2/profile/batchUpdate"
        if version == "v1":
            return f"{self.base_url}/m2/{self.client_code}/profile/batchUpdate"
        raise ValueError(f"unknown bulk API version {version!r}")

    def update_url(self) -> str:
        return f"{self.base_url}/m2/{self.client_code}/profile/update"

    # Bulk -----------------------------------------------------------------------------------

    def submit_batch(
        self, body: BatchBody, *, version: str = "v2", content_length: int | None = None
    ) -> SubmitResult:
        """POST a batch file (bytes, a path, or a binary stream whose bytes start with `batch=`).

        content_length is optional: the length is measured from the stream (non-seekable streams
        such as an S3 StreamingBody are spooled once so retries can resend them).
        """
        url = self.batch_url(version)
        replayable = _Body(body)
        try:
            stream, length = replayable.open()
            if content_length is not None and content_length != length:
                raise TargetRejected(f"batch body is {length} bytes, expected {content_length}")
            if stream.read(6) != b"batch=":
                raise TargetRejected("batch body must start with 'batch='")

            def data() -> _Sized:
                stream.seek(replayable._start)
                return _Sized(stream, length)

            resp, attempts = self._request(
                "POST", url, "batchUpdate", limited=True, data=data, content_type=FORM, once=True
            )
        finally:
            replayable.close()
        result = self._submit_result(resp, attempts, version)
        logger.info(
            "batch submitted",
            extra={"batch_id": result.batch_id, "bytes": length, "attempts": attempts, "version": version},
        )
        return result

    def _submit_result(self, resp: requests.Response, attempts: int, version: str) -> SubmitResult:
        """What a 2xx answer to a batch POST means. Target may have accepted the batch whatever the
        body says, unless it says success=false: so never TargetRetryLater from here."""
        parsed = parse_submit(resp.content)
        if parsed.parsed and not parsed.success:
            raise TargetRejected(
                f"batchUpdate: Target refused the batch: {parsed.message[:200] or 'success=false'}",
                status=resp.status_code,
                attempts=attempts,
            )
        status_url = parsed.status_url if parsed.parsed else extract_status_url(resp.content)
        if status_url:
            if not parsed.parsed:
                logger.warning(
                    "batch submit answer unreadable, status URL found in it",
                    extra={"status": resp.status_code},
                )
            return SubmitResult(status_url, parsed.message, attempts, version)
        what = "success without a status URL" if parsed.parsed else "an answer that is not Target's XML"
        raise TargetMaybeAccepted(
            f"batchUpdate: Target answered HTTP {resp.status_code} with {what}; it may have accepted "
            "the batch, so it is not sent again, and its status can't be followed",
            status=resp.status_code,
            attempts=attempts,
        )

    def batch_status(
        self, status_url: str, *, details: bool = True, expected_rows: int | None = None
    ) -> BatchStatus:
        """Follow the status URL Target returned (only http->https is changed for non-loopback hosts).

        A URL outside TargetScope (a foreign host) is refused before a byte is sent: TargetRejected.
        A status Target no longer knows (404/410, or a body without a status) is state "unknown".
        expected_rows: the rows the batch was sent with; lets an answer without a batch-level
        <status> that lists every row prove completion (see responses.parse_batch_status).
        """
        url = self.scope.status_url(status_url)
        if details:
            url = with_show_details(url)
        resp, attempts = self._request("GET", url, "batchStatus", limited=True, allow_statuses=(404, 410))
        if resp.status_code in (404, 410):
            return BatchStatus(state=UNKNOWN, attempts=attempts, http_status=resp.status_code)
        status = parse_batch_status(resp.content, expected_rows=expected_rows)
        status = BatchStatus(**{**status.__dict__, "attempts": attempts, "http_status": resp.status_code})
        logger.info(
            "batch status",
            extra={"batch_id": status.batch_id, "state": status.state, "profile_rows": len(status.profiles)},
        )
        return status

    # Single update ----------------------------------------------------------------------------

    def single_update(
        self, id_type: str, visitor_id: str, params: Mapping[str, str], *, encoded: bool = False
    ) -> SingleUpdateResult:
        """Update one existing profile. GET while the request fits single_get_max_bytes, POST up to
        single_post_max_bytes, TargetRejected above.

        encoded=False: names and values are plain text, percent-encoded here. encoded=True: they
        are already URL-encoded (as in batch files) and keep their %XX escapes, but Target
        form-decodes the query, so what would be syntax there is made literal first: a raw `&`,
        `#`, `?`, `=` (and space, `"`, non-ASCII...) is percent-encoded, so a value can never
        update another profile nor cut its row. A raw `+` (a space to Target, a plus sign to a
        person) or a `%` not followed by two hex digits is refused: TargetRejected.
        """
        if id_type not in ID_PARAMS:
            raise TargetRejected(f"id_type must be pcId or thirdPartyId, not {id_type!r}")
        _check_id(id_type, visitor_id)
        pairs = [(ID_PARAMS[id_type], visitor_id)]
        pairs += [(f"profile.{name}", value) for name, value in params.items()]
        if encoded:
            head = urlencode(pairs[:1], quote_via=quote)
            rest = [
                f"{_encoded_component(k, f'name {k[8:]!r}')}={_encoded_component(v, f'value of {k[8:]!r}')}"
                for k, v in pairs[1:]
            ]
            query = "&".join([head, *rest])
        else:
            query = urlencode(pairs, quote_via=quote)
        url = self.update_url()
        path_len = len(url.split("/", 3)[3]) + 2 + len(query)  # "/" + path + "?" + query
        if path_len <= self.single_get_max_bytes:
            method, size = "GET", path_len
            resp, attempts = self._request("GET", f"{url}?{query}", "update", limited=False)
        elif len(query) <= self.single_post_max_bytes:
            method, size = "POST", len(query)
            body = query.encode("ascii")
            resp, attempts = self._request(
                "POST", url, "update", limited=False, data=lambda: body, content_type=FORM
            )
        else:
            raise TargetRejected(
                f"single update of {len(query)} bytes exceeds the "
                f"{self.single_post_max_bytes}-byte POST limit"
            )
        parsed = parse_single_update(resp.content)
        if not parsed.success:
            raise TargetRejected(
                f"single update refused: {parsed.message[:200] or 'success=false'}",
                status=resp.status_code,
                attempts=attempts,
            )
        return SingleUpdateResult(True, parsed.message, method, size, attempts)

    def profile_url(self, id_type: str, visitor_id: str) -> str:
        """The profile fetch URL: by thirdPartyId, or by tntId (a pcId is Target's tntId)."""
        if id_type == "thirdPartyId":
            _check_id(id_type, visitor_id)
            path = f"/rest/v1/profiles/thirdPartyId/{quote(visitor_id, safe='')}"
        elif id_type in ("pcId", "tntId"):
            _check_id(id_type, visitor_id)
            path = f"/rest/v1/profiles/{quote(visitor_id, safe='')}"
        else:
            raise TargetRejected(f"id_type must be pcId or thirdPartyId, not {id_type!r}")
        return f"{self.base_url}{path}?client={quote(self.client_code, safe='')}"

    def fetch_profile(self, id_type: str, visitor_id: str) -> dict[str, Any] | None:
        """The profile as Target's fetch API shows it, or None when Target says there is none.

        Counted against the calls per minute like a status poll (the stricter reading: Adobe's
        pages don't say whether fetches count), with the same retries, re-mint and host rules.
        Only the documented not-found answer (404 with a JSON body whose status is 404) means
        "no profile": any other 404 (a proxy, a wrong base URL) or a 2xx that is not a JSON object
        is TargetRejected, so a misconfigured check never reads as "not applied yet".
        """
        url = self.profile_url(id_type, visitor_id)
        resp, attempts = self._request("GET", url, "profiles", limited=True, allow_statuses=(404,))
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code == 404:
            if isinstance(body, dict) and body.get("status") == 404:
                return None
            raise TargetRejected(
                "profiles: Target answered 404 without its 'no profile' message (check the base URL)",
                status=404,
                attempts=attempts,
            )
        if not isinstance(body, dict) or not isinstance(body.get("profileAttributes", {}), dict):
            raise TargetRejected(
                f"profiles: Target answered HTTP {resp.status_code} with something that is not a profile",
                status=resp.status_code,
                attempts=attempts,
            )
        return body

    # Transport ----------------------------------------------------------------------------------

    def _budget(self) -> float | None:
        """Seconds this invocation may still spend on Target calls and waits (None: no limit)."""
        left = self._time_left()
        return None if left is None else left - self.time_margin

    def _request(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        limited: bool,
        data: Callable[[], Any] | None = None,
        content_type: str | None = None,
        allow_statuses: tuple[int, ...] = (),
        once: bool = False,
    ) -> tuple[requests.Response, int]:
        """Send with retries; returns the final 2xx (or allowed) response and the calls made.

        once=True (a batch POST): after the request may have gone out, a timeout or dropped
        connection raises TargetMaybeAccepted instead of sending it again.
        """
        url = self.scope.check(url)
        tries = 0  # counted against max_attempts; a token re-mint's call is not
        calls = 0  # every HTTP call made: what messages report
        failures: Counter[str] = Counter()  # per failed call: "503", "ReadTimeout", ...
        reauthenticated = False
        last_status: int | None = None
        suggestion = self.retry.server_error_base
        while True:
            timeout = self._wait_for_slot(
                endpoint=endpoint,
                limited=limited,
                calls=calls,
                failures=failures,
                last_status=last_status,
                suggestion=suggestion,
            )
            tries += 1
            calls += 1
            headers = {"Accept": "application/xml, text/xml, */*"}
            if content_type:
                headers["Content-Type"] = content_type
            token = self.auth.token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self.stats.add("calls")
            started = time.monotonic()
            try:
                resp = self.session.request(
                    method,
                    url,
                    data=data() if data else None,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,  # an answer came, its body can't be read
            ) as exc:
                self.stats.add("transport_errors")
                kind = type(exc).__name__
                if once and not _never_sent(exc):
                    raise TargetMaybeAccepted(
                        f"{endpoint}: the request went out but no answer came back ({kind}); Target may "
                        "have accepted it, so it is not sent again",
                        attempts=calls,
                    ) from None
                failures[kind] += 1
                last_status = None
                suggestion = self.retry.transport_base
                delay = self.retry.delay(self.retry.transport_base, tries)
                logger.warning(
                    "target call failed", extra={"endpoint": endpoint, "error": kind, "attempt": calls}
                )
            else:
                self.stats.latency((time.monotonic() - started) * 1000)
                status = resp.status_code
                last_status = status
                if status in (503, 429):
                    self.stats.add("throttled")
                elif status >= 500:
                    self.stats.add("server_errors")
                if 200 <= status < 300 or status in allow_statuses:
                    return resp, calls
                if status in (401, 403):
                    failures[str(status)] += 1
                    if isinstance(self.auth, NoAuth):
                        raise TargetAuthError(
                            f"{endpoint}: not authorised: Target answered {status} and no token is "
                            "configured (authentication is on in Target: set the token secret)",
                            status=status,
                            attempts=calls,
                        )
                    if reauthenticated:
                        raise TargetAuthError(
                            f"{endpoint}: not authorised: Target answered {status} to a freshly read "
                            "token (check the token secret or the OAuth credentials)",
                            status=status,
                            attempts=calls,
                        )
                    # The token expired or was revoked: mint once more, don't count it as a retry.
                    logger.warning("target refused the token, re-minting", extra={"endpoint": endpoint})
                    self.auth.invalidate()
                    self.stats.add("reauthentications")
                    reauthenticated = True
                    tries -= 1
                    continue
                retry_after = _retry_after(resp)
                if status == 503:
                    base = self.retry.throttled_base
                elif status == 429:
                    base = self.retry.too_many_base
                elif status >= 500:
                    base = self.retry.server_error_base
                else:
                    message = parse_submit(resp.content).message or ""
                    raise TargetRejected(
                        f"{endpoint}: Target refused the request {message[:200]}".rstrip(),
                        status=status,
                        attempts=calls,
                    )
                failures[str(status)] += 1
                suggestion = retry_after if retry_after is not None else base
                delay = self.retry.delay(base, tries, retry_after)
                logger.warning(
                    "target call retryable", extra={"endpoint": endpoint, "status": status, "attempt": calls}
                )
            if tries >= self.max_attempts:
                raise TargetRetryLater(
                    _failures_text(endpoint, failures, calls),
                    status=last_status,
                    attempts=calls,
                    retry_after_seconds=suggestion,
                )
            budget = self._budget()
            if budget is not None and delay > budget:
                # Waiting here would pass the invocation's time: the state machine waits instead.
                raise TargetRetryLater(
                    f"{_failures_text(endpoint, failures, calls)}; the next try, in {delay:.0f} s, is left "
                    "to the workflow (past this invocation's time)",
                    status=last_status,
                    attempts=calls,
                    retry_after_seconds=max(delay, 1.0),
                )
            self.stats.add("retries")
            self.sleep(delay)

    def _wait_for_slot(
        self,
        *,
        endpoint: str,
        limited: bool,
        calls: int,
        failures: Counter[str],
        last_status: int | None,
        suggestion: float,
    ) -> float:
        """Take a rate-limit slot (never waiting past the invocation's time); the next call's timeout."""
        if limited:
            budget = self._budget()
            max_wait = self.limiter_max_wait
            if budget is not None:
                max_wait = max(0.0, min(max_wait, budget))
            try:
                # Status polls take only their share of the minute: submits keep priority.
                share = self.poll_calls_share if endpoint in SHARED_ENDPOINTS else 1.0
                if share < 1.0:
                    self.limiter.acquire(self.client_code, max_wait=max_wait, share=share)
                else:
                    self.limiter.acquire(self.client_code, max_wait=max_wait)
            except TargetRetryLater as exc:
                before = f"{_failures_text(endpoint, failures, calls)}; then " if calls else f"{endpoint}: "
                raise TargetRetryLater(
                    f"{before}{exc.message}",
                    status=last_status,
                    attempts=calls,
                    retry_after_seconds=exc.retry_after_seconds,
                ) from None
        budget = self._budget()
        if budget is None:
            return self.timeout
        if budget < MIN_CALL_SECONDS:
            before = f"{_failures_text(endpoint, failures, calls)}; " if calls else f"{endpoint}: "
            raise TargetRetryLater(
                f"{before}no time left in this invocation for a call, left to the workflow",
                status=last_status,
                attempts=calls,
                retry_after_seconds=max(suggestion if calls else 1.0, 1.0),
            )
        return min(self.timeout, budget)


def _never_sent(exc: Exception) -> bool:
    """True when exc proves the request never reached the server: no connection was made."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False  # a read timeout, a body cut short
    if isinstance(exc, requests.exceptions.SSLError):
        return True  # the TLS handshake is part of connecting
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # Refused, unresolvable or timed out while connecting. Anything else ("Connection aborted",
    # reset, remote disconnected) may have come after the request was written.
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _failures_text(endpoint: str, failures: Counter[str], calls: int) -> str:
    """ "batchUpdate: Target answered 503 to all 5 attempts", or a breakdown when they differ."""

    def what(kind: str) -> str:
        return f"HTTP {kind}" if kind.isdigit() else f"no answer ({kind})"

    if len(failures) == 1:
        kind, n = next(iter(failures.items()))
        every = "all " if n == calls and n > 1 else ""
        if kind.isdigit():
            return f"{endpoint}: Target answered {kind} to {every}{n} attempt{'s' if n > 1 else ''}"
        return f"{endpoint}: {what(kind)} to {every}{n} attempt{'s' if n > 1 else ''}"
    parts = ", ".join(f"{what(kind)} x{n}" for kind, n in failures.most_common())
    return f"{endpoint}: {calls} attempts failed: {parts}"


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _encoded_component(text: str, what: str) -> str:
    """An already URL-encoded name or value, made safe for a form-decoded query (see single_update).

    `what` names the parameter for messages; the value itself never goes into one.
    """
    if "+" in text:
        raise TargetRejected(
            f"single update: the {what} holds a raw '+' (a space to Target): write %20 or %2B"
        )
    if _BAD_PERCENT.search(text):
        raise TargetRejected(f"single update: the {what} holds a '%' not followed by two hex digits")
    # Keep escapes and the characters a query value may hold; encode the rest (& # ? = space ...).
    return quote(text, safe="%!$'()*,;:@/~")


def _check_id(id_type: str, visitor_id: str) -> None:
    if not visitor_id:
        raise TargetRejected("empty visitor id")
    if id_type == "thirdPartyId" and (
        len(visitor_id) > TARGET_ID_MAX_CHARS or "+" in visitor_id or "/" in visitor_id
    ):
        raise TargetRejected(
            f"thirdPartyId must be at most {TARGET_ID_MAX_CHARS} characters without '+' or '/'"
        )
