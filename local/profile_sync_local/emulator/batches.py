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


@dataclass
class _Batch:
    batch_id: str
    client: str
    version: str
    id_type: str
    rows: list[tuple[str, dict[str, str]]]
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


def parse_body(
    body: bytes, cfg: EmulatorConfig
) -> tuple[str, list[tuple[str, dict[str, str]]], list[bool]] | str:
    """(id type, rows as (visitor id, non-empty values), whether each row is invalid), or why the
    whole batch is refused."""
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
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "Batch file has no header"
    header = [unquote_plus(h) for h in lines[0].split(",")]
    id_type, names = header[0], header[1:]
    if id_type not in ("pcId", "thirdPartyId"):
        return "First header must be pcId or thirdPartyId"
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        return "Invalid parameter names in header"
    data_lines = lines[1:]
    if not data_lines:
        return "Batch file has no rows"
    if len(data_lines) > cfg.max_rows:
        return f"Batch file has more than {cfg.max_rows} rows"
    rows: list[tuple[str, dict[str, str]]] = []
    bad: list[bool] = []
    for line in data_lines:
        values = line.split(",")
        visitor_id = _form_decode(values[0])
        attrs = {
            name: _form_decode(v) for name, v in zip(names, values[1 : len(names) + 1], strict=False) if v
        }
        invalid = (
            not visitor_id
            or len(values) - 1 > len(names)
            or (
                id_type == "thirdPartyId"
                and (len(visitor_id) > THIRD_PARTY_ID_MAX_CHARS or "+" in visitor_id or "/" in visitor_id)
            )
        )
        rows.append((visitor_id, attrs))
        bad.append(invalid)
    return id_type, rows, bad


def status_parts(batch: _Batch, details: bool, cfg: EmulatorConfig) -> list[tuple[str, Any]]:
    """The elements of a batch status answer (the batch is known and its status kept)."""
    state = "stuck" if batch.stuck else ("complete" if batch.applied else "incomplete")
    parts: list[tuple[str, Any]] = [
        ("batchId", batch.batch_id),
        ("status", state),
        ("batchSize", str(len(batch.rows))),
    ]
    if details:
        outcomes = Counter(batch.outcomes)
        parts += [
            ("consumedCount", str(len(batch.outcomes))),
            ("successfulUpdates", str(outcomes["success"])),
            ("profilesNotFound", str(outcomes["not_found"])),
            ("failedUpdates", str(outcomes["failed"])),
        ]
    if batch.version == "v2" and cfg.profile_format == "failures":
        # Only failed rows are listed (none before the batch is applied).
        failed = [i for i, o in enumerate(batch.outcomes) if o == "failed"] if batch.applied else []
        for index in failed:
            parts.append(("profile", [("id", batch.rows[index][0]), ("status", "failed")]))
    elif batch.version == "v2":
        for index, (visitor_id, _) in enumerate(batch.rows):
            word = _row_word(batch, index, cfg.profile_format)
            if word:
                parts.append(("profile", [("id", visitor_id), ("status", word)]))
    return parts


def _row_word(batch: _Batch, index: int, profile_format: str) -> str:
    outcome = batch.outcomes[index] if batch.applied else "pending"
    if profile_format == "failures":
        return "failed" if outcome == "failed" else ""
    return {"failed": "error", "success": "success", "not_found": "error"}.get(outcome, "pending")
