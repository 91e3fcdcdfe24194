"""Merge the rows Target confirmed into the snapshot, with a conditional write of its pointer.

Runs once the job has ended. For each partition holding confirmed candidates, the current
snapshot file and the job's candidates file (both sorted by id; one partition in memory at a time)
are merged into a new file under a key of this version and job; partitions without confirmed rows
keep their file.
Then the pointer is written only if its version is still the one this merge started from. When
another job of the client wrote first, the merge is done again on the newer snapshot (``attempts``).

Old files: a file replaced by the new version is recorded in the pointer's ``retired`` with the
merge's time; a merge deletes the retired files older than ``grace_seconds`` (readers that read an
older pointer have long finished) before writing its pointer, and the files of its own attempt
when another job's pointer came first (no pointer ever named them). A deletion S3 refuses leaves
the files listed, for the next merge: cleanup never fails the update.

Per id: a confirmed row's non-empty values replace the snapshot's (Target keeps the others), and
its row hash becomes the record's. The id is marked unknown (sent again next time) when a job that
merged after this job's diff also wrote it, or when this job confirmed two different rows for it:
Target applies batches in any order, so which values it holds is not known.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from profile_sync.delta.snapshot import (
    APPLIED_KEPT,
    CANDIDATES_MAGIC,
    CONTENT_TYPE,
    UNKNOWN,
    Pointer,
    PointerStore,
    RecordWriter,
    Retired,
    SnapshotObjects,
    folder_of,
    join_pairs,
    partition_key,
    read_lines,
    remap,
)


@dataclass(frozen=True)
class UpdateResult:
    version: int  # the snapshot's version after the update
    confirmed: int = 0  # confirmed rows merged
    unknown: int = 0  # ids marked unknown (ambiguous)
    attempts: int = 0  # pointer writes tried
    skipped: str = ""  # why nothing was merged, if so
    deleted: int = 0  # old snapshot files deleted (replaced more than the grace period ago)

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "confirmed": self.confirmed,
            "unknown": self.unknown,
            "attempts": self.attempts,
            **({"skipped": self.skipped} if self.skipped else {}),
            **({"deleted": self.deleted} if self.deleted else {}),
        }


def confirmed_bits(
    unchanged_bits: bytes | bytearray, rows: int, batches: Iterable[tuple[int, Iterable[int] | None]]
) -> bytearray:
    """Bits over the file's rows (seq): set for each row sent and confirmed by Target.

    ``batches``: the job's batches in order, each as (rows, the row indexes Target did not confirm,
    ascending), or (rows, None) when no row of the batch is confirmed. Sent rows are the rows not
    unchanged, in seq order, batch after batch.
    """
    out = bytearray(len(unchanged_bits))
    sent = (s for s in range(rows) if not unchanged_bits[s >> 3] >> (s & 7) & 1)
    for count, not_confirmed in batches:
        skip = iter(not_confirmed) if not_confirmed is not None else None
        next_bad = next(skip, -1) if skip is not None else -1
        for index in range(count):
            seq = next(sent)
            if skip is None:
                continue
            if index == next_bad:
                next_bad = next(skip, -1)
                continue
            out[seq >> 3] |= 1 << (seq & 7)
    return out


def update_snapshot(
    *,
    client_code: str,
    id_type: str,
    job_id: str,
    base_version: int,
    partitions: int,
    names: list[bytes],
    candidates: Mapping[int, str],
    confirmed: bytes | bytearray,
    objects: SnapshotObjects,
    pointers: PointerStore,
    workdir: Path,
    now: str = "",
    max_attempts: int = 10,
    grace_seconds: int = 86400,
) -> UpdateResult:
    """Merge the confirmed candidates (``candidates``: partition -> candidates file key) into the snapshot.

    ``base_version``: the snapshot version the job's diff read; ``confirmed``: bits over seq
    (``confirmed_bits``). Safe to repeat: a job already merged is found in the pointer.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    attempts = 0
    while True:
        current = pointers.get(client_code, id_type)
        version = current.version if current is not None else 0
        if current is not None and job_id in current.applied:
            return UpdateResult(version, attempts=attempts, skipped="already merged")
        if current is not None and current.partitions != partitions:
            return UpdateResult(
                version,
                attempts=attempts,
                skipped=f"the snapshot now has {current.partitions} partitions, the diff used {partitions}",
            )
        if attempts >= max_attempts:
            raise RuntimeError(
                f"delta snapshot of {client_code}: {attempts} merges lost to other jobs' writes; "
                "its rows are sent again next time"
            )
        attempts += 1
        new_version = version + 1
        keys = dict(current.keys) if current is not None else {}
        ids = current.ids if current is not None else 0
        merged = unknown = 0
        written: list[str] = []
        for partition, key in sorted(candidates.items()):
            out = workdir / f"part-{partition:04d}.gz"
            stats = _merge_partition(
                old_key=keys.get(partition),
                candidates_key=key,
                confirmed=confirmed,
                names=names,
                base_version=base_version,
                new_version=new_version,
                objects=objects,
                out=out,
            )
            if stats is None:
                continue
            new_key = partition_key(client_code, id_type, new_version, job_id, partition)
            objects.upload_file(out, new_key, CONTENT_TYPE)
            out.unlink()
            written.append(new_key)
            keys[partition] = new_key
            ids += stats[0]
            merged += stats[1]
            unknown += stats[2]
        if not merged:
            return UpdateResult(version, attempts=attempts - 1, skipped="no confirmed rows")
        retired, deleted = _clean_up(objects, current, keys, now, grace_seconds)
        pointer = Pointer(
            version=new_version,
            partitions=partitions,
            keys=keys,
            ids=ids,
            applied=((current.applied if current is not None else ()) + (job_id,))[-APPLIED_KEPT:],
            updated_at=now,
            retired=retired,
        )
        if pointers.put(client_code, id_type, pointer, expect_version=version):
            return UpdateResult(
                new_version, confirmed=merged, unknown=unknown, attempts=attempts, deleted=deleted
            )
        # Another job's merge came first: its files stay; merge again on top of them. This attempt's
        # files were never named by a pointer: nobody reads them.
        _delete(objects, written)


def _clean_up(
    objects: SnapshotObjects, current: Pointer | None, keys: Mapping[int, str], now: str, grace_seconds: int
) -> tuple[tuple[Retired, ...], int]:
    """The new pointer's retired files, and how many old ones were deleted now.

    The current version's files that ``keys`` replaces are retired at ``now``; retired files older
    than the grace period are deleted (those S3 refused stay listed).
    """
    if current is None:
        return (), 0
    replaced: dict[str, list[int]] = {}
    for partition, key in sorted(current.keys.items()):
        if keys.get(partition) != key:
            replaced.setdefault(folder_of(key), []).append(partition)
    kept: list[Retired] = []
    deleted = 0
    for entry in current.retired:
        if not _older_than(entry.at, now, grace_seconds):
            kept.append(entry)
        elif _delete(objects, entry.files()):
            deleted += len(entry.parts)
        else:
            kept.append(entry)
    kept += [Retired(now, folder, tuple(parts)) for folder, parts in replaced.items()]
    return tuple(kept), deleted


def _older_than(at: str, now: str, seconds: int) -> bool:
    """``at`` is more than ``seconds`` before ``now`` (an unknown time never is)."""
    try:
        return (datetime.fromisoformat(now) - datetime.fromisoformat(at)).total_seconds() > seconds
    except ValueError:
        return False


def _delete(objects: SnapshotObjects, keys: list[str]) -> bool:
    """Delete the files; False (and they stay) when S3 refused: cleanup never fails an update."""
    if not keys:
        return True
    try:
        objects.delete_keys(keys)
    except Exception:
        return False
    return True


def _merge_partition(
    *,
    old_key: str | None,
    candidates_key: str,
    confirmed: bytes | bytearray,
    names: list[bytes],
    base_version: int,
    new_version: int,
    objects: SnapshotObjects,
    out: Path,
) -> tuple[int, int, int] | None:
    """Write the merged partition to ``out``; (new ids, rows merged, ids made unknown), or None.

    One partition (a bounded share) in memory: the snapshot's lines between confirmed ids are
    copied as they are.
    """
    cand_names, cand_lines = read_lines(objects.open(candidates_key), CANDIDATES_MAGIC)
    if cand_names != names:
        raise ValueError(f"{candidates_key}: its attribute names are not the job's")
    rows = [r for r in (line.split(b"\t") for line in cand_lines) if _bit(confirmed, int(r[1]))]
    if not rows:
        return None
    old_names: list[bytes] = []
    old_lines: list[bytes] = []
    if old_key is not None:
        old_names, old_lines = read_lines(objects.open(old_key))
    known = set(old_names)
    all_names = old_names + [n for n in names if n not in known]
    place = {name: i for i, name in enumerate(all_names)}
    width = len(all_names)
    stamp = b"%d" % new_version
    writer = RecordWriter(out, all_names)
    new_ids = unknown = 0
    pos = 0
    for ident, group in itertools.groupby(rows, key=lambda r: r[0]):
        same = list(group)
        at = bisect_left(old_lines, ident, lo=pos, key=_ident)
        writer.write_lines(old_lines[pos:at])
        record = (
            old_lines[at].split(b"\t") if at < len(old_lines) and _ident(old_lines[at]) == ident else None
        )
        pos = at + 1 if record is not None else at
        # Ambiguous: two different rows of this job, or an id another job wrote after our diff
        # (Target applies batches in any order: which values it holds is not known).
        if len({r[2] for r in same}) > 1 or (record is not None and int(record[2]) > base_version):
            writer.write([ident, UNKNOWN, stamp, b""])
            unknown += 1
        else:
            values = remap(same[-1][3], names, place, width)
            if record is not None and record[1] != UNKNOWN:  # Target keeps what the row leaves empty
                kept = remap(record[3], old_names, place, width)
                values = [new or old for new, old in zip(values, kept, strict=True)]
            writer.write([ident, same[-1][2], stamp, join_pairs(values)])
        if record is None:
            new_ids += 1
    writer.write_lines(old_lines[pos:])
    writer.close()
    return new_ids, len(rows), unknown


def _ident(line: bytes) -> bytes:
    return line[: line.find(b"\t")]


def _bit(bits: bytes | bytearray, seq: int) -> bool:
    return bool(bits[seq >> 3] >> (seq & 7) & 1)
