"""The duplicate-id counter: exact, in memory bounded by constants whatever the file size."""

from __future__ import annotations

import sys
import tempfile
from array import array
from collections import deque
from pathlib import Path
from typing import BinaryIO

from profile_sync.validate import tuning


class DuplicateCounter:
    """Exact count of repeated 64-bit hashes, in memory bounded by constants.

    Each hash goes to one of ``2**DUP_PARTITION_BITS`` partitions by its top bits (equal hashes
    always meet in the same partition). Partitions are buffered in ``array('q')`` (up to
    ``DUP_BUFFER`` hashes in all, plus the hashes of one read chunk) and then appended to one
    temporary file per partition. At the end each partition is counted on its own as
    ``len(hashes) - len(set(hashes))``; a partition of more than ``DUP_SET_MAX`` hashes is first
    split again by its next bits into sub-partition files, one block of ``DUP_SET_MAX`` hashes at a
    time (each block deduplicated in a set on the way, so repeats of one id shrink at once). Every
    step is a C-level operation over whole arrays (``bytes.translate`` for the partition keys,
    ``map`` for the dispatch, ``set`` for the count), never a Python loop per hash.
    """

    def __init__(self, spill_dir: Path) -> None:
        self._dir = spill_dir
        self._bits = tuning.DUP_PARTITION_BITS  # 1..8
        partitions = 1 << self._bits
        self._parts = [array("q") for _ in range(partitions)]
        self._files: list[BinaryIO | None] = [None] * partitions
        self._buffered = 0
        # Partition of a hash = its top bits: the top byte of its native bytes, shifted.
        self._top = 7 if sys.byteorder == "little" else 0
        self._key = bytes(b >> (8 - self._bits) for b in range(256))
        self._shift = 64 - self._bits

    def add(self, hashes: list[int]) -> None:
        keys = array("q", hashes).tobytes()[self._top :: 8].translate(self._key)
        deque(map(array.append, map(self._parts.__getitem__, keys), hashes), 0)
        self._buffered += len(hashes)
        if self._buffered >= tuning.DUP_BUFFER:
            self._flush()

    def add_one(self, h: int) -> None:
        self._parts[h >> self._shift].append(h)  # a negative index is the same partition
        self._buffered += 1
        if self._buffered >= tuning.DUP_BUFFER:
            self._flush()

    def _flush(self) -> None:
        files = self._files
        for i, part in enumerate(self._parts):
            if part:
                spill = files[i]
                if spill is None:
                    spill = files[i] = self._temp()
                part.tofile(spill)
                del part[:]
        self._buffered = 0

    def _temp(self) -> BinaryIO:
        return tempfile.TemporaryFile(dir=self._dir)  # closed by the caller

    def count(self) -> int:
        if not any(self._files):  # nothing spilled: the buffers hold every hash
            return sum(len(part) - len(set(part)) for part in self._parts)
        self._flush()
        total = 0
        for i, spill in enumerate(self._files):
            if spill is not None:
                self._files[i] = None
                with spill:
                    total += self._count_file(spill, 1)
        return total

    def _count_file(self, spill: BinaryIO, depth: int) -> int:
        """Repeats in one partition file whose hashes share their top ``depth * bits`` bits."""
        n = spill.tell() // 8
        spill.seek(0)
        if n <= tuning.DUP_SET_MAX:
            hashes = array("q")
            hashes.fromfile(spill, n)
            return n - len(set(hashes))
        bits_done = depth * self._bits
        if bits_done >= 64:  # every bit is shared: one hash, n times
            return n - 1
        shift = max(64 - bits_done - self._bits, 0)
        mask = (1 << min(self._bits, 64 - bits_done)) - 1
        parts = [array("q") for _ in range(mask + 1)]
        children: list[BinaryIO | None] = [None] * (mask + 1)
        repeats = 0
        try:
            while n:
                block = array("q")
                block.fromfile(spill, min(n, tuning.DUP_SET_MAX))
                n -= len(block)
                unique = set(block)
                repeats += len(block) - len(unique)
                keys = map(mask.__and__, map(shift.__rrshift__, unique))
                deque(map(array.append, map(parts.__getitem__, keys), unique), 0)
                del block, unique
                for i, part in enumerate(parts):
                    if part:
                        child = children[i]
                        if child is None:
                            child = children[i] = self._temp()
                        part.tofile(child)
                        del part[:]
            spill.truncate(0)  # its disk space is no longer needed
            for i, child in enumerate(children):
                if child is not None:
                    children[i] = None
                    with child:
                        repeats += self._count_file(child, depth + 1)
        finally:
            for child in children:
                if child is not None:
                    child.close()
        return repeats

    def close(self) -> None:
        for i, spill in enumerate(self._files):
            if spill is not None:
                self._files[i] = None
                spill.close()
