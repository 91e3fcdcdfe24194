"""The batch writer: accepted rows into batch-NNNNN.txt files under the row and byte limits, each
file handed on as soon as it is closed, with the map from its rows back to source lines."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from profile_sync.settings import Settings
from profile_sync.validate.results import BatchInfo


class _Batch:
    def __init__(self, index: int, path: Path, prefix: bytes) -> None:
        self.index = index
        self.path = path
        self.file = path.open("wb")
        self.file.write(prefix)
        self.rows = 0
        self.bytes = len(prefix)
        self.runs: list[list[int]] = []
        self.next_line = -1
        self.first_line = 0

    def add(self, data: bytes | memoryview, rows: int, first_line: int) -> None:
        self.file.write(data)
        if first_line != self.next_line:
            self.runs.append([self.rows, first_line])
        if not self.rows:
            self.first_line = first_line
        self.rows += rows
        self.bytes += len(data)
        self.next_line = first_line + rows


class BatchWriter:
    def __init__(
        self,
        out_dir: Path,
        settings: Settings,
        prefix: bytes,
        batches: list[BatchInfo],
        on_batch: Callable[[BatchInfo], None] | None,
    ) -> None:
        self.out_dir = out_dir
        self.max_rows = settings.batch_max_rows
        self.max_bytes = settings.batch_max_bytes
        self.prefix = prefix
        self.batches = batches  # closed batches are appended here
        self.on_batch = on_batch
        self.batch: _Batch | None = None

    def add_row(self, row: bytes, line: int) -> None:
        """One row (it fits an empty batch: the row checks made sure)."""
        batch = self.batch
        if batch is not None and (batch.rows >= self.max_rows or batch.bytes + len(row) >= self.max_bytes):
            self.close_batch()
        batch = self.batch or self._open_batch()
        batch.add(row, 1, line)
        if batch.rows >= self.max_rows:
            self.close_batch()

    def add_rows(self, buf: bytes, start: int, end: int, rows: int, first_line: int) -> None:
        """Consecutive rows buf[start:end] from consecutive source lines, split at batch limits."""
        view = memoryview(buf)
        max_rows, max_bytes = self.max_rows, self.max_bytes
        while start < end:
            batch = self.batch or self._open_batch()
            room_bytes = max_bytes - 1 - batch.bytes  # a batch file stays strictly under the limit
            cut, count = end, rows
            if end - start > room_bytes:
                cut = buf.rfind(b"\n", start, start + max(room_bytes, 0)) + 1
                if cut <= start:
                    if not batch.rows:  # the fast path only takes rows that fit an empty batch
                        raise AssertionError("fast-path row larger than a batch")
                    self.close_batch()
                    continue
                count = buf.count(b"\n", start, cut)
            room_rows = max_rows - batch.rows
            if count > room_rows:
                lines = re.compile(rb"(?:[^\n]*+\n){%d}" % room_rows).match(buf, start)
                assert lines is not None  # count > room_rows lines follow start
                cut = lines.end()
                count = room_rows
            batch.add(view[start:cut], count, first_line)
            start, rows, first_line = cut, rows - count, first_line + count
            if batch.rows >= max_rows:
                self.close_batch()

    def _open_batch(self) -> _Batch:
        index = len(self.batches) + 1
        path = self.out_dir / f"batch-{index:05d}.txt"
        self.batch = _Batch(index, path, self.prefix)
        return self.batch

    def close_batch(self) -> None:
        batch = self.batch
        if batch is None:
            return
        self.batch = None
        batch.file.close()
        info = BatchInfo(
            index=batch.index,
            name=batch.path.name,
            path=str(batch.path),
            rows=batch.rows,
            bytes=batch.bytes,
            first_line=batch.first_line,
            last_line=batch.next_line - 1,
            line_runs=batch.runs,
        )
        self.batches.append(info)
        if self.on_batch is not None:
            self.on_batch(info)

    def release(self) -> None:
        # On an unexpected error the open batch is left unfinished and never handed to on_batch.
        if self.batch is not None:
            self.batch.file.close()
