"""A bulk batch: its body parsed the way Target's servlet reads it, and its status answer."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from profile_sync_local.emulator.settings import THIRD_PARTY_ID_MAX_CHARS, EmulatorConfig


def batch_digest(body: bytes) -> str:
    """How received_batches() names a batch: sha256 of the POSTed body."""
    return hashlib.sha256(body).hexdigest()


def _form_decode(value: str) -> str:
    """unquote_plus, without its cost for the many values that hold no escape."""
    return unquote_plus(value) if "%" in value or "+" in value else value


def row_is_empty(line: str) -> bool:
    """A batch row holding only empty values (nothing to apply): every character after the id is
    a comma (an id holds no raw comma)."""
    comma = line.find(",")
    return comma < 0 or line.count(",") == len(line) - comma


@dataclass
class _Batch:
    batch_id: str
    client: str
    version: str
    id_type: str
    names: tuple[str, ...]  # the header's parameter names
    ids: list[str]  # each row's visitor id
    lines: list[str] | None  # each row as sent (values URL-encoded), until its values are applied
    row_fails: list[bool]
    created_at: float
    polls_until_complete: int
    seconds_until_complete: float
    stuck: bool
    vanish: bool
    vanish_after_polls: int
    polls: int = 0
    evicted: bool = False
    applied: bool = False  # complete: outcomes known (values written now or at visible_at)
    lost: set[int] = field(default_factory=set)  # rows reported successful and never applied
    visible_at: float | None = None  # when the values are to be written (None: written)
    outcomes: list[str] = field(default_factory=list)  # per row: success | failed | not_found
    counts: Counter[str] = field(default_factory=Counter)  # of outcomes, once applied


def parse_body(
    body: bytes, cfg: EmulatorConfig
) -> tuple[str, tuple[str, ...], list[str], list[str], list[bool]] | str:
    """(id type, parameter names, each row's visitor id, the rows, whether each row is invalid), or
    why the whole batch is refused. Values stay as sent (URL-encoded) until they are applied."""
    if not body.startswith(b"batch="):
        return "Request body must start with batch="
    if len(body) >= cfg.max_bytes:
        return f"Batch file size must be less than {cfg.max_bytes} bytes"
    # The body is a form (application/x-www-form-urlencoded): a raw `&` ends the batch
    # parameter, whatever follows is another parameter and never reaches the batch.
    form_value = body[len(b"batch=") :].split(b"&", 1)[0]
    try:
        text = form_value.decode("utf-8")
    except UnicodeDecodeError:
        return "Batch file must be UTF-8"
    del form_value
    lines = [line for line in text.splitlines() if line.strip()]
    del text
    if not lines:
        return "Batch file has no header"
    header = [unquote_plus(h) for h in lines[0].split(",")]
    id_type, names = header[0], tuple(header[1:])
    if id_type not in ("pcId", "thirdPartyId"):
        return "First header must be pcId or thirdPartyId"
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        return "Invalid parameter names in header"
    del lines[0]
    if not lines:
        return "Batch file has no rows"
    if len(lines) > cfg.max_rows:
        return f"Batch file has more than {cfg.max_rows} rows"
    ids: list[str] = []
    bad: list[bool] = []
    columns = len(names)
    third_party = id_type == "thirdPartyId"
    for line in lines:
        comma = line.find(",")
        visitor_id = _form_decode(line if comma < 0 else line[:comma])
        ids.append(visitor_id)
        bad.append(
            not visitor_id
            or line.count(",") > columns
            or (
                third_party
                and (len(visitor_id) > THIRD_PARTY_ID_MAX_CHARS or "+" in visitor_id or "/" in visitor_id)
            )
        )
    return id_type, names, ids, lines, bad


def status_parts(batch: _Batch, details: bool, cfg: EmulatorConfig) -> list[tuple[str, Any]]:
    """The elements of a batch status answer (the batch is known and its status kept)."""
    state = "stuck" if batch.stuck else ("complete" if batch.applied else "incomplete")
    parts: list[tuple[str, Any]] = [
        ("batchId", batch.batch_id),
        ("status", state),
        ("batchSize", str(len(batch.ids))),
    ]
    if details:
        outcomes = batch.counts
        parts += [
            ("consumedCount", str(len(batch.outcomes))),
            ("successfulUpdates", str(outcomes["success"])),
            ("profilesNotFound", str(outcomes["not_found"])),
            ("failedUpdates", str(outcomes["failed"])),
        ]
    if batch.version == "v2" and cfg.profile_format == "failures":
        # Only failed rows are listed (none before the batch is applied).
        if batch.applied and batch.counts["failed"]:
            for visitor_id, outcome in zip(batch.ids, batch.outcomes, strict=True):
                if outcome == "failed":
                    parts.append(("profile", [("id", visitor_id), ("status", "failed")]))
    elif batch.version == "v2":
        for index, visitor_id in enumerate(batch.ids):
            word = _row_word(batch, index, cfg.profile_format)
            if word:
                parts.append(("profile", [("id", visitor_id), ("status", word)]))
    return parts


def _row_word(batch: _Batch, index: int, profile_format: str) -> str:
    outcome = batch.outcomes[index] if batch.applied else "pending"
    if profile_format == "failures":
        return "failed" if outcome == "failed" else ""
    return {"failed": "error", "success": "success", "not_found": "error"}.get(outcome, "pending")
