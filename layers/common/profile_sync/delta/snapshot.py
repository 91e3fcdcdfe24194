"""The snapshot's format, its pointer, and the ports it is stored through.

A snapshot of one client code and id type is ``partitions`` gzip text files (a power of two; an
id's partition is ``crc32(id) & (partitions - 1)``), each sorted by id (bytes order):

    #psd1<TAB>name1,name2,...                      the attribute names the value hashes refer to
    <id><TAB><row hash><TAB><version><TAB><h1>,<h2>,...

``id`` as sent (URL-encoded: no tab, comma or line break); ``row hash``: 16 hex digits
(``rowhash``) of the row last confirmed, or ``-`` when the id's values are unknown (two jobs raced
on it: it is sent again next time); ``version``: the snapshot version that wrote the record;
``h1..``: 12 hex digits per attribute Target holds, empty where it holds none, positions after the
last one left out. A partition that holds nothing has no file.

The pointer (a small record in the jobs table) names the current version and its files. Files are
never overwritten: a new version writes new keys, so a diff still streaming an older version
reads consistent files. A file a new version replaced is listed in the pointer's ``retired`` with
the time it was replaced, and deleted by the first merge after DELTA_CLEANUP_GRACE_SECONDS (a
reader holds a pointer for at most one Lambda invocation, 15 minutes); see delta.update.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

MAGIC = b"#psd1"
CANDIDATES_MAGIC = b"#psc1"
UNKNOWN = b"-"  # row hash of an id whose values are not known (sent again next time)
GZIP_LEVEL = 1  # hashes hardly compress; level 1 takes the ids' share at a fraction of the time
APPLIED_KEPT = 50  # job ids the pointer remembers, so a retried update is not applied twice
# No API of this pipeline clears an attribute with an empty value (TARGET_API.md: empty values are
# ignored; deleting attributes is planned for a v3). An API that could would be listed here.
EMPTY_CLEARS: frozenset[str] = frozenset()
CONTENT_TYPE = "application/gzip"


def partition_of(ident: bytes, partitions: int) -> int:
    return zlib.crc32(ident) & (partitions - 1)


def check_partitions(partitions: int) -> int:
    if partitions < 1 or partitions & (partitions - 1) or partitions > 4096:
        raise ValueError(f"delta partitions must be a power of two from 1 to 4096, not {partitions}")
    return partitions


def snapshot_prefix(client_code: str, id_type: str) -> str:
    return f"delta/{client_code}/{id_type}/"


def partition_key(client_code: str, id_type: str, version: int, job_id: str, partition: int) -> str:
    """Unique per version and job: two jobs racing for one version never write the same key."""
    return f"{snapshot_prefix(client_code, id_type)}v{version:08d}-{job_id}/part-{partition:04d}.gz"


def folder_of(key: str) -> str:
    """The folder of one version's files (``.../v00000007-<jobId>/``)."""
    return key.rsplit("/", 1)[0] + "/"


def part_key(folder: str, partition: int) -> str:
    return f"{folder}part-{partition:04d}.gz"


@dataclass(frozen=True)
class Retired:
    """Files of one folder that a version replaced at ``at`` (ISO-8601), kept for the grace period."""

    at: str
    folder: str
    parts: tuple[int, ...]

    def files(self) -> list[str]:
        return [part_key(self.folder, p) for p in self.parts]


@dataclass(frozen=True)
class Pointer:
    version: int
    partitions: int
    keys: Mapping[int, str] = field(default_factory=dict)  # partition -> file; absent: empty partition
    ids: int = 0  # records in the snapshot (unknown ones included)
    applied: tuple[str, ...] = ()  # the last jobs merged, newest last
    updated_at: str = ""
    retired: tuple[Retired, ...] = ()  # replaced files not deleted yet, oldest first

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "partitions": self.partitions,
            "keys": {str(p): key for p, key in sorted(self.keys.items())},
            "ids": self.ids,
            "applied": list(self.applied),
            "updatedAt": self.updated_at,
            "retired": [{"at": r.at, "folder": r.folder, "parts": list(r.parts)} for r in self.retired],
        }

    @classmethod
    def from_dict(cls, item: Mapping[str, object]) -> Pointer:
        keys = item.get("keys") or {}
        applied = item.get("applied") or []
        retired = item.get("retired") or []
        assert isinstance(keys, Mapping) and isinstance(applied, list) and isinstance(retired, list)
        return cls(
            version=int(str(item["version"])),
            partitions=int(str(item["partitions"])),
            keys={int(p): str(key) for p, key in keys.items()},
            ids=int(str(item.get("ids") or 0)),
            applied=tuple(str(job) for job in applied),
            updated_at=str(item.get("updatedAt") or ""),
            retired=tuple(
                Retired(str(r["at"]), str(r["folder"]), tuple(int(p) for p in r["parts"])) for r in retired
            ),
        )


class PointerStore(Protocol):
    def get(self, client_code: str, id_type: str) -> Pointer | None:
        """The current pointer (a strongly consistent read), None when the client has no snapshot."""
        ...

    def put(self, client_code: str, id_type: str, pointer: Pointer, *, expect_version: int) -> bool:
        """Store ``pointer`` only if the stored version is ``expect_version`` (0: none stored yet).

        False when another writer got there first; nothing is changed then.
        """
        ...


class SnapshotObjects(Protocol):
    def open(self, key: str) -> BinaryIO:
        """The object, streamed; FileNotFoundError when it does not exist."""
        ...

    def upload_file(self, path: Path, key: str, content_type: str) -> None: ...

    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects (a missing one is no error); raises when S3 refused any."""
        ...


# ------------------------------------------------------------------------------------- files
def read_records(stream: BinaryIO, magic: bytes = MAGIC) -> tuple[list[bytes], Iterator[list[bytes]]]:
    """(attribute names, records split on tabs) of a gzip snapshot or candidates file, streamed."""
    text = io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"), buffer_size=1 << 20)
    header = text.readline().rstrip(b"\n").split(b"\t")
    if header[0] != magic or len(header) != 2:
        raise ValueError(f"not a {magic.decode()} file")
    names = header[1].split(b",") if header[1] else []

    def records() -> Iterator[list[bytes]]:
        with text:
            for line in text:
                yield line.rstrip(b"\n").split(b"\t")

    return names, records()


def read_lines(stream: BinaryIO, magic: bytes = MAGIC) -> tuple[list[bytes], list[bytes]]:
    """(attribute names, record lines without their line break) of one whole file: one partition,
    a bounded share of the snapshot, read in C rather than line by line."""
    with stream, gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
        data = unzipped.read()
    header, _, body = data.partition(b"\n")
    fields = header.split(b"\t")
    if fields[0] != magic or len(fields) != 2:
        raise ValueError(f"not a {magic.decode()} file")
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return (fields[1].split(b",") if fields[1] else []), lines


class RecordWriter:
    """Writes one gzip file of records (already in id order) with its header."""

    def __init__(self, path: Path, names: list[bytes], magic: bytes = MAGIC) -> None:
        self.path = path
        self.count = 0
        self._file = gzip.open(path, "wb", compresslevel=GZIP_LEVEL)  # noqa: SIM115 (closed by close())
        self._file.write(magic + b"\t" + b",".join(names) + b"\n")
        self._buffer: list[bytes] = []

    def write(self, fields: list[bytes]) -> None:
        self.write_line(b"\t".join(fields))

    def write_line(self, line: bytes) -> None:
        self._buffer.append(line)
        self.count += 1
        if len(self._buffer) >= 4096:
            self._flush()

    def write_lines(self, lines: list[bytes]) -> None:
        """Record lines (no line breaks) as they are."""
        if lines:
            self._flush()
            self._file.write(b"\n".join(lines) + b"\n")
            self.count += len(lines)

    def _flush(self) -> None:
        if self._buffer:
            self._file.write(b"\n".join(self._buffer) + b"\n")
            self._buffer.clear()

    def close(self) -> None:
        self._flush()
        self._file.close()


def remap(pairs: bytes, source: list[bytes], target_index: Mapping[bytes, int], width: int) -> list[bytes]:
    """Value hashes listed against ``source`` names, placed at the ``target_index`` positions."""
    out = [b""] * width
    for name, value in zip(source, pairs.split(b","), strict=False):
        if value:
            out[target_index[name]] = value
    return out


def join_pairs(values: list[bytes]) -> bytes:
    """Positions after the last non-empty one are left out."""
    end = len(values)
    while end and not values[end - 1]:
        end -= 1
    return b",".join(values[:end])
