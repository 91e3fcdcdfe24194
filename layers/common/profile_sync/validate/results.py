"""What the engine reports: the result, its batches, the reason codes, and the helpers that shape a
rejects.csv cell (shared with the client-profile transcoder and the job's report)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from typing import Any

from profile_sync.settings import Settings

REASONS = (
    "invalid_quoting",
    "invalid_utf8",
    "too_many_fields",
    "empty_id",
    "invalid_encoding",
    "ambiguous_plus",
    "control_character",
    "id_too_long",
    "invalid_third_party_id",
    "row_too_large",
)
ID_COLUMNS = ("pcId", "thirdPartyId")
EXPERIENCE_CLOUD_IDS = ("marketingcloudvisitorid", "ecid", "mcid")
REJECTS_HEADER = ("line", "reason", "detail", "original")

_SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


class FileRejected(Exception):
    """The whole file is unusable (bad or missing header). ``validate_and_split`` reports it in
    ``ValidationResult.file_error`` instead of raising."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class BatchInfo:
    index: int  # 1-based
    name: str  # batch-00001.txt
    path: str
    rows: int
    bytes: int
    first_line: int  # source line of the first row
    last_line: int  # source line of the last row
    # [row_index_in_batch, source_line] pairs; a new pair starts where source lines stop being consecutive.
    line_runs: list[list[int]] = field(default_factory=list)

    def source_line(self, row_index: int) -> int:
        """Source line of the batch's 0-based row ``row_index``."""
        if not 0 <= row_index < self.rows:
            raise IndexError(row_index)
        run = bisect_right(self.line_runs, row_index, key=lambda pair: pair[0]) - 1
        start_row, start_line = self.line_runs[run]
        return start_line + row_index - start_row

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationResult:
    source_name: str
    input_mode: str
    id_column: str | None = None
    columns: list[str] = field(default_factory=list)
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    duplicate_ids: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    rejected_unlisted: int = 0  # rejected rows counted but not listed in rejects.csv (rejects_max_rows)
    warnings: list[str] = field(default_factory=list)
    batches: list[BatchInfo] = field(default_factory=list)
    rejects_path: str = ""
    file_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spreadsheet_safe(text: str) -> str:
    """A CSV cell a spreadsheet shows as text (OWASP CSV injection): a leading quote stops a formula."""
    return "'" + text if text.startswith(_SPREADSHEET_TRIGGERS) else text


def spreadsheet_unsafe(text: str) -> str:
    """The text ``spreadsheet_safe`` was given (drops only the quote it added)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_SPREADSHEET_TRIGGERS) else text


def cut_original(kept: bytes, length: int, cap: int) -> str:
    """A rejected line as rejects.csv keeps it: at most ``cap`` bytes of ``kept`` (the start of a
    ``length``-byte line), marked with how many bytes are missing when cut."""
    kept = kept[:cap]
    text = kept.decode("utf-8", errors="replace")
    return text if length <= len(kept) else f"{text}…[cut: {length - len(kept):,} bytes]"


def unlisted_warning(source: str, settings: Settings, unlisted: int) -> str:
    return (
        f"{source}: rejects.csv lists the first {settings.rejects_max_rows:,} rejected rows; "
        f"{unlisted:,} more are counted by reason but not listed (REJECTS_MAX_ROWS)"
    )
