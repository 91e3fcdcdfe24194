"""Parsing of Target's XML answers (submit, batch status, single update).

Target's XML is small and loosely specified: tags are looked up anywhere in the document (with or
without a wrapping element or namespace), whitespace is trimmed, and a body that isn't XML yields
a result marked unparsed instead of an exception, so callers decide what that means.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # Target's own answers; DOCTYPEs are refused below
from dataclasses import dataclass, field

COMPLETE = "complete"
INCOMPLETE = "incomplete"
STUCK = "stuck"
UNKNOWN = "unknown"
STATES = (COMPLETE, INCOMPLETE, STUCK, UNKNOWN)

# Per-profile outcomes: 2017-2020 rows said success/error/pending, today only failed rows are listed.
OUTCOME_FAILED = "failed"
OUTCOME_SUCCESS = "success"
OUTCOME_PENDING = "pending"
_OUTCOMES = {
    "failed": OUTCOME_FAILED,
    "failure": OUTCOME_FAILED,
    "error": OUTCOME_FAILED,
    "success": OUTCOME_SUCCESS,
    "successful": OUTCOME_SUCCESS,
    "pending": OUTCOME_PENDING,
}

MAX_XML_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class SubmitResponse:
    success: bool
    status_url: str
    message: str
    parsed: bool = True  # False: the body was not XML at all


@dataclass(frozen=True)
class BatchStatus:
    state: str  # complete | incomplete | stuck | unknown
    batch_id: str = ""
    batch_size: int | None = None
    consumed: int | None = None
    successful: int | None = None
    not_found: int | None = None
    failed: int | None = None
    # (visitor id, outcome) with outcome failed | success | pending
    profiles: list[tuple[str, str]] = field(default_factory=list)
    raw_status: str = ""  # the status word as Target wrote it ("" when absent)
    message: str = ""
    attempts: int = 0
    http_status: int | None = None

    @property
    def per_profile_format(self) -> str:
        """ "all" (2017-2020: every row listed), "failures" (today), or "none" (no rows, e.g. v1)."""
        if any(outcome != OUTCOME_FAILED for _, outcome in self.profiles):
            return "all"
        return "failures" if self.profiles else "none"

    @property
    def failed_ids(self) -> list[str]:
        return [pid for pid, outcome in self.profiles if outcome == OUTCOME_FAILED]

    @property
    def pending_ids(self) -> list[str]:
        return [pid for pid, outcome in self.profiles if outcome == OUTCOME_PENDING]

    def __repr__(self) -> str:
        # Keep visitor ids out of reprs that end up in logs.
        return (
            f"BatchStatus(state={self.state!r}, batch_id={self.batch_id!r}, batch_size={self.batch_size}, "
            f"consumed={self.consumed}, successful={self.successful}, not_found={self.not_found}, "
            f"failed={self.failed}, profiles=<{len(self.profiles)} rows>, attempts={self.attempts})"
        )


@dataclass(frozen=True)
class SingleUpdateResponse:
    success: bool
    message: str
    parsed: bool = True


def _root(body: bytes | str) -> ET.Element | None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    data = data.strip()
    if not data.startswith(b"<") or len(data) > MAX_XML_BYTES or b"<!DOCTYPE" in data.upper():
        return None
    try:
        return ET.fromstring(data)  # noqa: S314 - no DTDs accepted (checked above), size bounded
    except ET.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_text(root: ET.Element, name: str, *, skip: str = "profile") -> str | None:
    """Text of the first element called name (any depth, namespace or letter case).

    Subtrees of `skip` elements are not searched: a <profile> row has its own <status>.
    """
    wanted = name.lower()
    pending = [root]
    while pending:
        el = pending.pop(0)
        tag = _local(el.tag).lower()
        if tag == wanted:
            return (el.text or "").strip()
        if el is root or tag != skip:
            pending.extend(el)
    return None


def _find_int(root: ET.Element, name: str) -> int | None:
    text = _find_text(root, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _is_true(text: str | None) -> bool:
    return (text or "").strip().lower() == "true"


def parse_submit(body: bytes | str) -> SubmitResponse:
    root = _root(body)
    success = None if root is None else _find_text(root, "success")
    if root is None or success is None:
        # Not Target's answer (e.g. an HTML page from a proxy, even a well-formed one).
        return SubmitResponse(success=False, status_url="", message=_text_excerpt(body), parsed=False)
    return SubmitResponse(
        success=_is_true(success),
        status_url=_find_text(root, "batchStatus") or "",
        message=_find_text(root, "message") or "",
    )


def parse_batch_status(body: bytes | str) -> BatchStatus:
    """A status answer; a body without a recognisable status word gives state "unknown"."""
    root = _root(body)
    if root is None:
        return BatchStatus(state=UNKNOWN, message=_text_excerpt(body))
    raw = _find_text(root, "status")
    state = (raw or "").lower()
    if state not in (COMPLETE, INCOMPLETE, STUCK):
        state = UNKNOWN
    profiles = []
    for el in root.iter():
        if _local(el.tag).lower() != "profile":
            continue
        pid = _find_text(el, "id", skip="")
        word = (_find_text(el, "status", skip="") or "").lower()
        if pid is None:
            continue
        # An unknown per-row word is not proof of success: count it as failed.
        profiles.append((pid, _OUTCOMES.get(word, OUTCOME_FAILED)))
    return BatchStatus(
        state=state,
        batch_id=_find_text(root, "batchId") or "",
        batch_size=_find_int(root, "batchSize"),
        consumed=_find_int(root, "consumedCount"),
        successful=_find_int(root, "successfulUpdates"),
        not_found=_find_int(root, "profilesNotFound"),
        failed=_find_int(root, "failedUpdates"),
        profiles=profiles,
        raw_status=raw or "",
        message=_find_text(root, "message") or "",
    )


def parse_single_update(body: bytes | str) -> SingleUpdateResponse:
    root = _root(body)
    if root is None:
        # Adobe's page shows the answer tag-stripped ("trueRequest successfully submitted").
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        match = re.match(r"^\s*(true|false)", text, re.IGNORECASE)
        if match:
            return SingleUpdateResponse(
                success=match.group(1).lower() == "true", message=text[match.end() :].strip()[:200]
            )
        return SingleUpdateResponse(success=False, message=_text_excerpt(body), parsed=False)
    success = _find_text(root, "success")
    if success is None:
        return SingleUpdateResponse(success=False, message=_text_excerpt(body), parsed=False)
    return SingleUpdateResponse(success=_is_true(success), message=_find_text(root, "message") or "")


def _text_excerpt(body: bytes | str, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return " ".join(text.split())[:limit]
