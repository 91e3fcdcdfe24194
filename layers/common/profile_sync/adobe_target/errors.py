"""Typed failures of the Target client.

The workflow maps them to three actions: retry later (TargetRetryLater), give up on the batch
(TargetRejected) and re-authenticate or alert (TargetAuthError). Messages carry status codes,
batch ids and Target's own message, never tokens or profile values.
"""

from __future__ import annotations


class TargetError(Exception):
    """Base of every Target client failure."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # last HTTP status seen, None when no answer came
        self.attempts = attempts

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.attempts and "attempt" not in self.message:
            parts.append(f"after {self.attempts} attempt(s)")
        return " | ".join(parts)


class TargetRetryLater(TargetError):
    """Throttled (503/429), a 5xx, a timeout or a dropped connection, after the client's own retries.

    retry_after_seconds is a suggestion for the caller's next try (Retry-After when Target sent
    one, else the back-off base of the last failure kind).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 0,
        retry_after_seconds: float = 60.0,
    ) -> None:
        super().__init__(message, status=status, attempts=attempts)
        self.retry_after_seconds = retry_after_seconds


class TargetMaybeAccepted(TargetError):
    """The batch body reached Target and it may have accepted it, but no usable answer came back.

    A 2xx whose body can't be read, or a read timeout / connection reset after the body was sent.
    Never send the batch again: follow status_url when one could be found in the body ("" when
    none), else its rows end pending.
    """

    def __init__(
        self, message: str, *, status: int | None = None, attempts: int = 0, status_url: str = ""
    ) -> None:
        super().__init__(message, status=status, attempts=attempts)
        self.status_url = status_url


class TargetRejected(TargetError):
    """Target (or the client before sending) refused the request: retrying the same request won't help."""


class TargetAuthError(TargetError):
    """401/403 that persisted after one re-mint of the token, or credentials that can't mint one."""
