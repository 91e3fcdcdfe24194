"""The engine: reads the input in chunks, hands runs of clean lines to the fast path and every other
record to the record parser and row rules, and feeds the batch writer, rejects.csv and the
duplicate counter."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from profile_sync.settings import Settings
from profile_sync.validate import tuning
from profile_sync.validate.batches import BatchWriter
from profile_sync.validate.header import read_header
from profile_sync.validate.records import Rejection, RowChecker, parse_record
from profile_sync.validate.rejects import RejectsWriter
from profile_sync.validate.results import BatchInfo, FileRejected, ValidationResult, unlisted_warning

if TYPE_CHECKING:
    from profile_sync.validate.duplicates import DuplicateCounter
    from profile_sync.validate.fast_path import ChunkScan, CleanRun, FastPath

_BOM = b"\xef\xbb\xbf"


class ByteStream(Protocol):
    """What the engine reads: a binary file, an S3 body, a client profile's ProfileReader."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_ahead(stream: ByteStream, size: int) -> Generator[bytes]:
    """``stream.read(size)`` until it returns b"" (yielded too), the next read running in a thread
    while the caller works on this chunk: gzip decompression and S3 reads release the GIL, so they
    overlap the parsing. One read at a time is in flight: at most one chunk more in memory. An
    exception from the stream is raised here, where its read would be."""
    with ThreadPoolExecutor(1, thread_name_prefix="validate-read-ahead") as reader:
        pending = reader.submit(stream.read, size)
        try:
            while True:
                data = pending.result()
                if data:
                    pending = reader.submit(stream.read, size)
                yield data
                if not data:
                    return
        finally:
            pending.cancel()  # a read under way finishes; the executor's exit waits for it


def validate_and_split(
    stream: ByteStream,
    out_dir: Path,
    settings: Settings,
    *,
    source_name: str = "<stream>",
    on_batch: Callable[[BatchInfo], None] | None = None,
) -> ValidationResult:
    """Validate ``stream`` and write ``out_dir/batch-NNNNN.txt`` files and ``out_dir/rejects.csv``.

    ``on_batch`` is called with each batch as soon as its file is closed. A bad header does not
    raise: it sets ``file_error`` and no batch is written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = _Engine(out_dir, settings, source_name, on_batch)
    try:
        engine.run(stream)
        engine.finish()
    except FileRejected as exc:
        engine.result.file_error = exc.message
    finally:
        engine.release()
    return engine.result


class _Engine:
    def __init__(
        self,
        out_dir: Path,
        settings: Settings,
        source_name: str,
        on_batch: Callable[[BatchInfo], None] | None,
    ) -> None:
        self.out_dir = out_dir
        self.settings = settings
        self.source = source_name
        self.on_batch = on_batch
        self.result = ValidationResult(source_name=source_name, input_mode=settings.input_mode)
        self.line = 1  # source line number of the next unprocessed byte
        # Set by the header:
        self.rows: RowChecker | None = None
        self.fast: FastPath | None = None
        self.batches: BatchWriter | None = None
        self.record_limit = max(tuning.MIN_RECORD_LIMIT, 4 * settings.row_max_bytes)
        rejects_path = out_dir / "rejects.csv"
        self.result.rejects_path = str(rejects_path)
        self.rejects = RejectsWriter(rejects_path, settings, self.result, self.record_limit)
        # numpy comes in here, when a file is validated: the functions that import this package
        # only for its results (the report, finalize) do not load it. The engine does no linear
        # algebra: one OpenBLAS thread (unless set) makes the import faster and starts no idle pool.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from profile_sync.validate.duplicates import DuplicateCounter  # noqa: PLC0415

        self.duplicates: DuplicateCounter = DuplicateCounter(out_dir)

    # ---- reading -------------------------------------------------------------------------------

    def run(self, stream: ByteStream) -> None:
        pending = b""
        started = False
        discarding: list[Any] | None = None  # [line, kept prefix, length so far] of an over-long line
        reads = read_ahead(stream, tuning.CHUNK_SIZE) if tuning.READ_AHEAD else None
        try:
            while True:
                data = next(reads) if reads is not None else stream.read(tuning.CHUNK_SIZE)
                eof = not data
                if discarding is not None:
                    nl = data.find(b"\n")
                    discarding[2] += len(data) if nl < 0 else nl
                    if nl < 0 and not eof:
                        continue
                    self._reject_overlong(*discarding)
                    discarding = None
                    data = data[nl + 1 :] if nl >= 0 else b""
                buf = pending + data if pending else data
                data = b""  # drop references early: at most two chunk-sized buffers are alive at once
                if not started:
                    if len(buf) < len(_BOM) and not eof:
                        pending = buf
                        continue
                    started = True
                    if buf.startswith(_BOM):
                        buf = buf[len(_BOM) :]
                if eof:
                    if buf and not buf.endswith(b"\n"):
                        buf += b"\n"
                    work, pending = buf, b""
                else:
                    cut = buf.rfind(b"\n") + 1
                    work, pending = buf[:cut], buf[cut:]
                buf = b""
                if b"\r" in work:
                    work = work.replace(b"\r\n", b"\n")
                done = self._process(work, eof)
                if done < len(work):  # a quoted record continues in the next chunk
                    pending = work[done:] + pending
                elif len(pending) > self.record_limit:
                    discarding = [self.line, pending[: self.rejects.original_cap], len(pending)]
                    pending = b""
                if eof:
                    break
        finally:
            if reads is not None:
                reads.close()  # stops and joins the reader thread
        if self.rows is None:
            raise FileRejected(
                f"{self.source}: no header: the file is empty or has only blank lines; "
                "the first line must name the columns, starting with pcId or thirdPartyId"
            )

    def _process(self, work: bytes, eof: bool) -> int:
        """Handle the records in ``work``; return where an unfinished record starts (or len)."""
        pos = 0
        n = len(work)
        scan: ChunkScan | None = None  # made once the header has built the fast path
        while pos < n:
            if self.fast is not None:
                if scan is None:
                    scan = self.fast.scan(work, self.duplicates.seed)
                run = scan.run(pos)
                if run is not None:
                    self._emit_clean(run)
                    pos = run.after
                    continue
            nxt = self._slow(work, pos, eof)
            if nxt < 0:
                return pos
            pos = nxt
        return n

    def _emit_clean(self, run: CleanRun) -> None:
        assert self.batches is not None
        self.duplicates.add(run.hashes)
        rows = run.rows
        first_line = self.line
        self.line += rows
        self.result.received += rows
        self.result.accepted += rows
        self.batches.add_rows(run.buf, run.start, run.end, rows, first_line)

    # ---- per-record path -----------------------------------------------------------------------

    def _slow(self, work: bytes, pos: int, eof: bool) -> int:
        """Handle the record at ``pos``; return the index after it, or -1 to wait for more data."""
        nl = work.find(b"\n", pos)
        line = self.line
        if nl == pos:  # blank line: not a row
            self.line += 1
            return pos + 1
        fields: list[bytes]
        quoted: list[bool] | None
        if work.find(b'"', pos, nl) < 0:
            fields, quoted, end, error = work[pos:nl].split(b","), None, nl + 1, None
        else:
            parsed = parse_record(work, pos)
            if parsed is None:
                if not eof and len(work) - pos <= self.record_limit:
                    return -1
                # Never closed: give up on this line only and resync at the next one.
                fields, quoted, end, error = [], None, nl + 1, "a quoted field is never closed"
            else:
                fields, quoted, end, error = parsed
        record = work[pos : end - 1]
        self.line += record.count(b"\n") + 1
        if self.rows is None:
            if error:
                raise FileRejected(f"{self.source}: line {line}: header: {error}")
            self._header(fields, line)
            return end
        self.result.received += 1
        if error:
            self.rejects.reject(line, "invalid_quoting", error, record)
            return end
        outcome = self.rows.check(fields, quoted, record)
        if outcome is None:
            self.result.skipped += 1
        elif isinstance(outcome, Rejection):
            self.rejects.reject(line, outcome.reason, outcome.detail, record)
        else:
            row, ident = outcome
            self.result.accepted += 1
            self.duplicates.add_id(ident)
            assert self.batches is not None
            self.batches.add_row(row, line)
        return end

    def _header(self, fields: list[bytes], line: int) -> None:
        header = read_header(fields, self.settings, f"{self.source}: line {line}: header")
        result = self.result
        result.warnings += header.warnings
        result.id_column = header.names[0]
        result.columns = header.names[1:]
        prefix = header.prefix
        self.rows = RowChecker(self.settings, header.names, len(prefix))
        from profile_sync.validate.fast_path import build_fast_path  # noqa: PLC0415 (numpy: see __init__)

        self.fast = build_fast_path(self.settings, header.names, len(prefix))
        self.batches = BatchWriter(self.out_dir, self.settings, prefix, result.batches, self.on_batch)

    def _reject_overlong(self, line: int, kept: bytes, length: int) -> None:
        if self.rows is None:
            raise FileRejected(f"{self.source}: line {line}: header is longer than {self.record_limit} bytes")
        self.result.received += 1
        self.line = line + 1
        detail = f"the line is {length:,} bytes, longer than {self.record_limit:,}"
        self.rejects.reject(line, "row_too_large", detail, b"", self.rejects.original(kept, length))

    # ---- the end -------------------------------------------------------------------------------

    def finish(self) -> None:
        result = self.result
        if self.batches is not None:
            self.batches.close_batch()
        result.duplicate_ids = self.duplicates.count()
        if self.rows is not None and not result.received:
            # Most often a broken export: say so rather than end a job that sent nothing in silence.
            result.warnings.append(
                f"{self.source}: the file has a header and no rows: nothing to send; "
                "check that the export is complete"
            )
        if result.rejected_unlisted:
            result.warnings.append(unlisted_warning(self.source, self.settings, result.rejected_unlisted))
        if result.duplicate_ids:
            result.warnings.append(
                f"{self.source}: {result.duplicate_ids} "
                f"{'row repeats' if result.duplicate_ids == 1 else 'rows repeat'} an id from an earlier row; "
                "Target's updates of one id override each other, and batches may be applied in any order"
            )

    def release(self) -> None:
        if self.batches is not None:
            self.batches.release()
        self.duplicates.close()
        self.rejects.close()
