"""The duplicate-id counter: exact, in memory bounded by constants whatever the file size, and the
64-bit id hash it counts (one vectorised over a chunk's ids, one for a single id: the same value)."""

from __future__ import annotations

import os
import tempfile
from array import array
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from profile_sync.validate import tuning

Hashes = NDArray[np.uint64]
Positions = NDArray[np.int64]

_M64 = (1 << 64) - 1
_K0, _K1, _K2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
# The low r bytes of a little-endian word, r = 0..8.
_BLOCK_MIN = 256  # hashes added as an array of their own; fewer are copied into one buffer
_LOW_BYTES = np.array([(1 << (8 * r)) - 1 for r in range(9)], dtype=np.uint64)


def hash_id(ident: bytes, seed: int) -> int:
    """The 64-bit hash of one id: the length and the seed, then each 8-byte little-endian word mixed
    in (xor, multiply, xor-shift: a bijection of the state for a given word, so ids of one length
    up to 8 bytes never collide), then a finalizer. ``hash_ids`` computes the same over many ids."""
    h = seed ^ (len(ident) * _K0 & _M64)
    for k in range(0, len(ident), 8):
        h ^= int.from_bytes(ident[k : k + 8], "little")
        h = h * _K1 & _M64
        h ^= h >> 31
    h ^= h >> 30
    h = h * _K1 & _M64
    h ^= h >> 27
    h = h * _K2 & _M64
    return h ^ (h >> 31)


def hash_ids(buf: bytes, starts: Positions, lengths: Positions, seed: int) -> Hashes:
    """``hash_id(buf[s : s + n], seed)`` for each start s and length n (n >= 1), in whole-array steps."""
    if len(buf) < 8:
        buf = buf.ljust(8, b"\0")
    # Every 8-byte window of buf as one little-endian word (overlapping: strides of one byte).
    last = len(buf) - 8
    words = np.ndarray((last + 1,), dtype="<u8", buffer=buf, strides=(1,))
    h = lengths.astype(np.uint64)
    h *= np.uint64(_K0)
    h ^= np.uint64(seed)
    rows: Positions | None = None  # None: every id still has bytes at offset k
    k = 0
    while True:
        at = starts + k if rows is None else starts[rows] + k
        left = lengths - k if rows is None else lengths[rows] - k
        inside = np.minimum(at, last)
        w = words[inside]
        if at.max() > last:  # windows past the end of buf: read the last one and shift
            w >>= ((at - inside) * 8).astype(np.uint64)
        w &= _LOW_BYTES[np.minimum(left, 8)]
        part = h if rows is None else h[rows]
        part ^= w
        part *= np.uint64(_K1)
        part ^= part >> np.uint64(31)
        if rows is not None:
            h[rows] = part
        k += 8
        rows = np.flatnonzero(lengths > k)
        if not len(rows):
            break
    h ^= h >> np.uint64(30)
    h *= np.uint64(_K1)
    h ^= h >> np.uint64(27)
    h *= np.uint64(_K2)
    h ^= h >> np.uint64(31)
    return h


def _distinct(hashes: Hashes) -> int:
    """How many different values ``hashes`` holds (sorts it in place)."""
    if not len(hashes):
        return 0
    hashes.sort()
    return 1 + int(np.count_nonzero(hashes[1:] != hashes[:-1]))


def _unique(hashes: Hashes) -> Hashes:
    """The different values of ``hashes``, sorted."""
    return np.unique(hashes)


class DuplicateCounter:
    """Exact count of repeated 64-bit id hashes, in memory bounded by constants.

    Each hash goes to one of ``2**DUP_PARTITION_BITS`` partitions by its top bits (equal hashes
    always meet in the same partition). Hashes are buffered (up to ``DUP_BUFFER``, plus those of
    one read chunk), then grouped by partition (a radix sort of the partition keys) and appended
    to one temporary file per partition. At the end each partition is counted on its own: sorted,
    ``len - distinct``; a partition of more than ``DUP_SET_MAX`` hashes is first split again by its
    next bits into sub-partition files, one block of ``DUP_SET_MAX`` hashes at a time (each block
    deduplicated on the way, so repeats of one id shrink at once). Every step works on whole
    arrays, never a Python loop per hash.
    """

    def __init__(self, spill_dir: Path) -> None:
        self._dir = spill_dir
        # Ids are hashed with a seed of this run: equal within it, unpredictable from outside.
        self.seed = int.from_bytes(os.urandom(8), "little")
        self._bits = tuning.DUP_PARTITION_BITS  # 1..8
        self._shift = np.uint64(64 - self._bits)
        self._blocks: list[Hashes] = []
        self._singles = array("Q")  # single ids and short runs: 8 bytes a hash, not an object each
        self._buffered = 0
        self._files: list[BinaryIO | None] = [None] * (1 << self._bits)

    def add(self, hashes: Hashes) -> None:
        if len(hashes) >= _BLOCK_MIN:
            self._blocks.append(hashes)
        else:  # a file of short runs must not buffer an array object per run
            self._singles.frombytes(hashes.tobytes())
        self._buffered += len(hashes)
        if self._buffered >= tuning.DUP_BUFFER:
            self._flush()

    def add_id(self, ident: bytes) -> None:
        self.add_hash(hash_id(ident, self.seed))

    def add_hash(self, h: int) -> None:
        self._singles.append(h)
        self._buffered += 1
        if self._buffered >= tuning.DUP_BUFFER:
            self._flush()

    def _take(self) -> Hashes:
        """Every buffered hash, in one new array; the buffer is emptied."""
        blocks = self._blocks
        if self._singles:
            blocks.append(np.frombuffer(self._singles, dtype=np.uint64))
        hashes = np.concatenate(blocks) if blocks else np.empty(0, dtype=np.uint64)
        self._blocks, self._singles, self._buffered = [], array("Q"), 0
        return hashes

    def _flush(self) -> None:
        hashes = self._take()
        keys = (hashes >> self._shift).astype(np.uint8)
        ends = np.cumsum(np.bincount(keys, minlength=len(self._files)))
        grouped = hashes[np.argsort(keys, kind="stable")]
        del hashes, keys
        start = 0
        for i, end in enumerate(ends.tolist()):
            if end > start:
                spill = self._files[i]
                if spill is None:
                    spill = self._files[i] = self._temp()
                grouped[start:end].tofile(spill)
            start = end

    def _temp(self) -> BinaryIO:
        return tempfile.TemporaryFile(dir=self._dir)  # closed by the caller

    def count(self) -> int:
        if not any(self._files):  # nothing spilled: the buffer holds every hash
            hashes = self._take()
            return len(hashes) - _distinct(hashes)
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
            return n - _distinct(np.fromfile(spill, dtype=np.uint64, count=n))
        bits_done = depth * self._bits
        if bits_done >= 64:  # every bit is shared: one hash, n times
            return n - 1
        shift = np.uint64(max(64 - bits_done - self._bits, 0))
        mask = np.uint64((1 << min(self._bits, 64 - bits_done)) - 1)
        children: list[BinaryIO | None] = [None] * (int(mask) + 1)
        repeats = 0
        try:
            while n:
                block = np.fromfile(spill, dtype=np.uint64, count=min(n, tuning.DUP_SET_MAX))
                n -= len(block)
                unique = _unique(block)  # sorted: the sub-partitions follow each other
                repeats += len(block) - len(unique)
                ends = np.cumsum(
                    np.bincount(((unique >> shift) & mask).astype(np.intp), minlength=len(children))
                )
                del block
                start = 0
                for i, end in enumerate(ends.tolist()):
                    if end > start:
                        child = children[i]
                        if child is None:
                            child = children[i] = self._temp()
                        unique[start:end].tofile(child)
                    start = end
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
