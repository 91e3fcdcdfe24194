"""rejects.csv: every rejected row counted by reason, the first ``rejects_max_rows`` listed with a
copy of their line cut to ``rejects_original_max_bytes``, every cell safe for spreadsheets."""

from __future__ import annotations

import csv
from pathlib import Path

from profile_sync.settings import Settings
from profile_sync.validate.results import REJECTS_HEADER, ValidationResult, cut_original, spreadsheet_safe


class RejectsWriter:
    def __init__(self, path: Path, settings: Settings, result: ValidationResult, record_limit: int) -> None:
        self.result = result
        # Bytes of a rejected line kept in rejects.csv; rows listed there (None = no limit).
        self.original_cap = settings.rejects_original_max_bytes or record_limit
        self.left = settings.rejects_max_rows or None
        self.file = path.open("w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(REJECTS_HEADER)

    def reject(self, line: int, reason: str, detail: str, record: bytes, original: str | None = None) -> None:
        result = self.result
        result.rejected += 1
        result.reasons[reason] = result.reasons.get(reason, 0) + 1
        if self.left is not None:
            if not self.left:  # counted above, not listed: the disk stays bounded
                result.rejected_unlisted += 1
                return
            self.left -= 1
        if original is None:
            original = self.original(record, len(record))
        self.writer.writerow([line, reason, spreadsheet_safe(detail), spreadsheet_safe(original)])

    def original(self, kept: bytes, length: int) -> str:
        return cut_original(kept, length, self.original_cap)

    def close(self) -> None:
        self.file.close()
