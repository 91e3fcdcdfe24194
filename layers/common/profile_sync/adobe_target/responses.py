"""Parsing of Target's XML answers (submit, batch status, single update).

Target's XML is small and loosely specified, and Adobe's own examples are not always well-formed:
its v2 submit example holds a raw `&` inside <batchStatus>. So:
- tags are looked up anywhere in the document (with or without a wrapping element or namespace),
  in any letter case; whitespace around the document and inside elements is ignored;
- parsing goes through defusedxml (no DTDs, no entities, whatever the encoding); a body that fails
  is parsed again with every bare `&` (one not starting an entity) escaped;
- a body that still isn't XML yields a result marked unparsed, never an exception: callers decide
  what that means (extract_status_url() finds a status URL in any text).
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET  # types and ParseError only; parsing goes through defusedxml
from dataclasses import dataclass, field, replace

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _safe_fromstring

from profile_sync.model import TargetState

COMPLETE = TargetState.COMPLETE
INCOMPLETE = TargetState.INCOMPLETE
STUCK = TargetState.STUCK
UNKNOWN = TargetState.UNKNOWN
STATES = tuple(TargetState)

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
MAX_SCAN_CHARS = 1024 * 1024  # extract_status_url looks at the start of a body only


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


# A `&` that does not start an entity or character reference.
_BARE_AMP = re.compile(rb"&(?!(?:[A-Za-z_][\w.-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
# A status URL anywhere in a text: in <batchStatus>, or bare (an unreadable or truncated body).
# Both need a terminator after the URL: a truncated body must not yield a truncated URL.
_STATUS_URL_IN_TAG = re.compile(r"<\s*(?:\w+:)?batchStatus\s*>\s*(https?://[^<\s]+)\s*</", re.IGNORECASE)
_STATUS_URL_BARE = re.compile(
    r"https?://[^\s<>\"']+/batchStatus\?[^\s<>\"']*batchId=[^\s<>\"']+(?=[\s<>\"'])", re.IGNORECASE
)


def _root(body: bytes | str) -> ET.Element | None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    data = data.strip()
    if not data or len(data) > MAX_XML_BYTES:
        return None
    root = _parse(data)
    if root is None and b"&" in data:
        root = _parse(_BARE_AMP.sub(b"&amp;", data))  # Adobe's own v2 example: a raw & in a URL
    return root


def _parse(data: bytes) -> ET.Element | None:
    try:
        # forbid_dtd: a DOCTYPE is refused by the parser itself, in any encoding (UTF-16 too).
        return _safe_fromstring(data, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError, LookupError):
        return None


def extract_status_url(body: bytes | str) -> str:
    """A batch status URL found anywhere in a body that may not be XML at all ("" when none).

    For a 2xx whose body can't be parsed: the batch was probably accepted, and following this
    URL beats resending it.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text[:MAX_SCAN_CHARS]
    match = _STATUS_URL_IN_TAG.search(text) or _STATUS_URL_BARE.search(text)
    if not match:
        return ""
    url = html.unescape(match.group(1) if match.re is _STATUS_URL_IN_TAG else match.group(0))
    return url.strip()


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


def parse_batch_status(body: bytes | str, *, expected_rows: int | None = None) -> BatchStatus:
    """A status answer; a body without a recognisable status gives state "unknown".

    Without a batch-level <status> (Adobe's 2017 v2 example lists only per-profile rows), the
    state is implied, and only from proof: see _implied_state. expected_rows (the rows the batch
    was sent with, when the caller knows them) lets a full list of final rows prove completion.
    """
    root = _root(body)
    if root is None:
        return BatchStatus(state=UNKNOWN, message=_text_excerpt(body))
    raw = _find_text(root, "status")
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
    status = BatchStatus(
        state=UNKNOWN,
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
    state = (raw or "").lower()
    if state not in (COMPLETE, INCOMPLETE, STUCK):
        state = UNKNOWN if raw else _implied_state(status, expected_rows)
    return replace(status, state=state)


def _implied_state(status: BatchStatus, expected_rows: int | None) -> str:
    """The state of a status answer without a batch-level <status>, from what proves it.

    - a row still `pending`: incomplete;
    - every row listed and final: complete. "Every row" is proven by a `success` row (only the
      2017-2020 format lists successes, and it lists every row), or by as many rows as the batch
      has (batchSize, or expected_rows from the caller);
    - counters that account for the whole batch (successful + failed + not found = batchSize):
      complete; fewer: incomplete;
    - anything else (e.g. a few failed rows and nothing more) proves nothing: unknown.
    """
    if status.pending_ids:
        return INCOMPLETE
    size = status.batch_size if status.batch_size is not None else expected_rows
    rows = status.profiles
    if rows and (any(o == OUTCOME_SUCCESS for _, o in rows) or (size is not None and len(rows) >= size)):
        return COMPLETE
    if status.batch_size is not None and status.successful is not None:
        counted = status.successful + (status.failed or 0) + (status.not_found or 0)
        return COMPLETE if counted >= status.batch_size else INCOMPLETE
    return UNKNOWN


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
