"""A new file's rows against the snapshot, partition by partition, and its batches without the unchanged rows.

``diff_batches`` reads the job's batch files (rows exactly as they would be sent) once and spills
each row to its partition's file on disk, with its number in file order (its *seq*). Then, one
partition at a time, it reads that partition's rows and the snapshot's file of the same partition
(an id -> record map) and compares. Memory: one partition of the new file and one of the snapshot
(each a 1/``partitions`` share; ``PREFETCH`` more snapshot partitions read ahead), the spill
buffers (``SPILL_BUFFER_BYTES``) and the seqs of the rows to send (8 bytes each).
Disk: about the size of the rows, twice.

A row is unchanged when its id is in the snapshot and either its row hash is the one recorded
(the same values as the row last confirmed), or every non-empty value it holds is the value the
snapshot records for that attribute (an emptied or missing value is no change: Target keeps the old
one). Every other row is a *candidate*: written, sorted by id, with its seq, row hash and value
hashes, for the update after the job.
"""

from __future__ import annotations

import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import BinaryIO

from profile_sync.delta.rowhash import VALUE_HASH_BYTES, RowHasher
from profile_sync.delta.snapshot import (
    CANDIDATES_MAGIC,
    UNKNOWN,
    Pointer,
    RecordWriter,
    SnapshotObjects,
    check_partitions,
    join_pairs,
    read_lines,
)
from profile_sync.validate import BatchInfo

SPILL_BUFFER_BYTES = 8 << 20  # rows held before they are appended to their partitions' files
PREFETCH = 2  # snapshot partitions fetched ahead of the one being compared
BATCH_PREFIX = b"batch="


@dataclass
class DiffResult:
    id_type: str
    names: list[bytes]  # the attribute names of the file, as sent
    partitions: int
    base_version: int  # the snapshot version diffed against (0: none yet)
    rows: int = 0
    changed_seqs: array[int] = field(default_factory=lambda: array("L"))  # rows to send, ascending
    candidates: dict[int, Path] = field(default_factory=dict)  # partition -> candidates file (gzip)

    @property
    def changed(self) -> int:
        return len(self.changed_seqs)

    @property
    def unchanged(self) -> int:
        return self.rows - self.changed

    @property
    def unchanged_bits(self) -> bytearray:
        """Bit ``seq`` set: row seq is unchanged (one bit per row)."""
        bits = bytearray(b"\xff" * ((self.rows + 7) >> 3))
        if self.rows & 7:
            bits[-1] = (1 << (self.rows & 7)) - 1
        for seq in self.changed_seqs:
            bits[seq >> 3] &= ~(1 << (seq & 7)) & 0xFF
        return bits


def diff_batches(
    batch_paths: Iterable[Path],
    *,
    pointer: Pointer | None,
    objects: SnapshotObjects,
    workdir: Path,
    partitions: int,
) -> DiffResult:
    """Diff the rows of ``batch_paths`` (in order; one header) against the snapshot ``pointer`` names.

    ``partitions`` is used only when there is no snapshot yet; an existing one keeps its own.
    Candidate files are written in ``workdir``.
    """
    count = pointer.partitions if pointer is not None else check_partitions(partitions)
    spill_dir = workdir / "spill"
    spill_dir.mkdir(parents=True, exist_ok=True)
    header, rows = _spill(batch_paths, spill_dir, count)
    names = header.split(b",")
    result = DiffResult(
        id_type=names[0].decode(),
        names=names[1:],
        partitions=count,
        base_version=pointer.version if pointer is not None else 0,
        rows=rows,
    )
    hasher = RowHasher(result.names)
    changed: list[int] = []
    todo = [p for p in range(count) if (spill_dir / f"{p:04d}.rows").exists()]

    def fetch(partition: int) -> tuple[list[bytes], list[bytes]]:
        key = pointer.keys.get(partition) if pointer is not None else None
        return read_lines(objects.open(key)) if key is not None else ([], [])

    # The next partitions' snapshot files are fetched while this one is compared (S3's latency,
    # not the CPU, would otherwise set the pace): at most PREFETCH + 1 partitions in memory.
    with ThreadPoolExecutor(max_workers=PREFETCH) as pool:
        ahead: dict[int, Future[tuple[list[bytes], list[bytes]]]] = {}
        for n, partition in enumerate(todo):
            for nxt in todo[n : n + PREFETCH + 1]:
                if nxt not in ahead:
                    ahead[nxt] = pool.submit(fetch, nxt)
            snapshot = ahead.pop(partition).result()
            out = workdir / f"cand-{partition:04d}.gz"
            if _diff_partition(spill_dir / f"{partition:04d}", snapshot, hasher, changed, out):
                result.candidates[partition] = out
    changed.sort()
    result.changed_seqs = array("L", changed)
    return result


def _spill(batch_paths: Iterable[Path], spill_dir: Path, partitions: int) -> tuple[bytes, int]:
    """Each row appended to its partition's ``.rows`` file, its seq to the ``.seq`` file; (header, rows)."""
    mask = partitions - 1
    lines: dict[int, list[bytes]] = {}
    seqs: dict[int, array[int]] = {}
    held = 0
    seq = 0
    header: bytes | None = None

    def flush() -> None:
        for partition, chunk in lines.items():
            with (spill_dir / f"{partition:04d}.rows").open("ab") as out:
                out.write(b"".join(chunk))
            with (spill_dir / f"{partition:04d}.seq").open("ab") as out:
                seqs[partition].tofile(out)
        lines.clear()
        seqs.clear()

    crc = zlib.crc32
    for path in batch_paths:
        with path.open("rb") as body:
            first = body.readline().rstrip(b"\n")
            if header is None:
                header = first
            elif first != header:
                raise ValueError(f"{path.name}: its header differs from the first batch's")
            while chunk := body.readlines(1 << 20):
                if not chunk[-1].endswith(b"\n"):
                    chunk[-1] += b"\n"
                places = [crc(line.split(b",", 1)[0]) & mask for line in chunk]
                for line, place in zip(chunk, places, strict=True):
                    if place not in lines:
                        lines[place], seqs[place] = [], array("L")
                    lines[place].append(line)
                    seqs[place].append(seq)
                    seq += 1
                held += sum(map(len, chunk)) + 8 * len(chunk)
                if held >= SPILL_BUFFER_BYTES:
                    flush()
                    held = 0
    flush()
    if header is None or not header.startswith(BATCH_PREFIX):
        raise ValueError("no batch file, or one that does not start with batch=")
    return header[len(BATCH_PREFIX) :], seq


def _diff_partition(
    spill: Path,
    snapshot: tuple[list[bytes], list[bytes]],
    hasher: RowHasher,
    changed: list[int],
    out: Path,
) -> bool:
    """Diff one partition; appends the seqs of its rows to send to ``changed``; True if it has any."""
    rows_path, seq_path = spill.with_suffix(".rows"), spill.with_suffix(".seq")
    seqs = array("L")
    with seq_path.open("rb") as body:
        seqs.frombytes(body.read())
    rows = [line.split(b",") for line in rows_path.read_bytes().split(b"\n")[:-1]]
    rows_path.unlink()
    seq_path.unlink()
    # One partition of the snapshot in memory, id -> "row hash<TAB>version<TAB>value hashes".
    snap_names, records = snapshot
    held: dict[bytes, bytes] = dict(line.split(b"\t", 1) for line in records)
    hashes = list(map(hasher.fields_hash, rows))
    olds = [held.get(fields[0]) for fields in rows]
    position = {name: i for i, name in enumerate(snap_names)}
    at = [position.get(name) for name in hasher.names]  # each file column's place in the snapshot
    found: list[tuple[bytes, int, bytes, list[bytes]]] = []
    for fields, row_hash, old, seq in zip(rows, hashes, olds, seqs, strict=True):
        if old is not None and (old.startswith(row_hash) or _held(fields, old, at)):
            continue  # unchanged
        found.append((fields[0], seq, row_hash, fields))
    if not found:
        return False
    found.sort(key=lambda r: (r[0], r[1]))
    writer = RecordWriter(out, hasher.names, CANDIDATES_MAGIC)
    for ident, seq, row_hash, fields in found:
        changed.append(seq)
        writer.write([ident, b"%d" % seq, row_hash, join_pairs(hasher.value_hashes(fields[1:]))])
    writer.close()
    return True


def _held(fields: list[bytes], old: bytes, at: list[int | None]) -> bool:
    """True when every non-empty value is the one the snapshot holds for its attribute."""
    row_hash, _, rest = old.partition(b"\t")
    if row_hash == UNKNOWN:
        return False
    held = rest.partition(b"\t")[2].split(b",")
    for i, value in enumerate(fields[1:]):
        if not value:
            continue
        place = at[i]
        if place is None or place >= len(held) or not held[place]:
            return False
        if held[place] != blake2b(value, digest_size=VALUE_HASH_BYTES).hexdigest().encode():
            return False
    return True


# ------------------------------------------------------------------------------------- rebatch
def rebatch(
    batches: list[BatchInfo],
    send: Sequence[int],
    *,
    out_dir: Path,
    max_rows: int,
    max_bytes: int,
    on_batch: Callable[[BatchInfo], None] | None = None,
) -> list[BatchInfo]:
    """New batch files of the rows whose seq is in ``send`` (ascending), within the same limits.

    ``batches`` are the engine's (files on disk); rows are numbered across them in order. Kept rows
    are written as they are, so each still fits a batch with the header, and keep their source lines.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _BatchWriter(out_dir, max_rows, max_bytes, on_batch)
    first = 0  # seq of the batch's first row
    for batch in batches:
        start, stop = bisect_left(send, first), bisect_left(send, first + batch.rows)
        if start < stop:
            wanted = [seq - first for seq in send[start:stop]]
            with Path(batch.path).open("rb") as body:
                header = body.readline()
                writer.prefix = writer.prefix or header
                index = 0  # batch row index of the chunk's first line
                at = 0
                while at < len(wanted) and (chunk := body.readlines(1 << 20)):
                    end = index + len(chunk)
                    while at < len(wanted) and wanted[at] < end:
                        line = chunk[wanted[at] - index]
                        writer.add(
                            line if line.endswith(b"\n") else line + b"\n", batch.source_line(wanted[at])
                        )
                        at += 1
                    index = end
        first += batch.rows
    writer.close()
    return writer.done


class _BatchWriter:
    def __init__(
        self, out_dir: Path, max_rows: int, max_bytes: int, on_batch: Callable[[BatchInfo], None] | None
    ) -> None:
        self.out_dir, self.max_rows, self.max_bytes, self.on_batch = out_dir, max_rows, max_bytes, on_batch
        self.prefix = b""
        self.done: list[BatchInfo] = []
        self._lines: list[bytes] = []
        self._runs: list[list[int]] = []
        self._bytes = self._rows = self._first = self._next = 0
        self._file: BinaryIO | None = None

    def add(self, line: bytes, source_line: int) -> None:
        if self._file is not None and (
            self._rows >= self.max_rows or self._bytes + len(line) >= self.max_bytes
        ):
            self.close()
        if self._file is None:
            path = self.out_dir / f"batch-{len(self.done) + 1:05d}.txt"
            self._file = path.open("wb")
            self._file.write(self.prefix)
            self._bytes, self._rows, self._runs, self._first = len(self.prefix), 0, [], source_line
        if source_line != self._next or not self._runs:
            self._runs.append([self._rows, source_line])
        self._lines.append(line)
        if len(self._lines) >= 4096:
            self._file.write(b"".join(self._lines))
            self._lines.clear()
        self._rows += 1
        self._bytes += len(line)
        self._next = source_line + 1

    def close(self) -> None:
        if self._file is None:
            return
        self._file.write(b"".join(self._lines))
        self._lines.clear()
        self._file.close()
        path = Path(str(self._file.name))
        self._file = None
        info = BatchInfo(
            index=len(self.done) + 1,
            name=path.name,
            path=str(path),
            rows=self._rows,
            bytes=self._bytes,
            first_line=self._first,
            last_line=self._next - 1,
            line_runs=self._runs,
        )
        self.done.append(info)
        if self.on_batch is not None:
            self.on_batch(info)
