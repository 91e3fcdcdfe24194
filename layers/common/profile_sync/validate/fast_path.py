"""The fast path: runs of lines the per-row rules would accept unchanged (encoded mode) or only
percent-encode (raw mode), found over a whole chunk at once and copied to the batch file in bulk,
with the hash of each row's id for the duplicate counter.

Encoded mode classifies the chunk with numpy (``_EncodedScan``); raw mode matches one compiled regex
(``_RawScan``). Both are conservative: a line they do not take goes to the per-record path, which
decides every rejection and every rewrite.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from profile_sync.settings import Settings
from profile_sync.validate import tuning
from profile_sync.validate.duplicates import Hashes, Positions, hash_id, hash_ids
from profile_sync.validate.records import PERCENT

_RAW_NEEDS_ESCAPE = re.compile(rb"[^A-Za-z0-9_.~\-,\n]+")

# Encoded mode: a clean line holds printable ASCII except space " # & + = ? (a raw space, '"' and
# '+' are rejected; & # ? = are rewritten as %26 %23 %3F %3D); '%' and ',' are checked on their own.
_MARKED = b'"#%&+,=?'  # with the newline and every byte outside '!'..'~'
_HEX = np.full(256, 0xFF, dtype=np.uint8)
for _digit, _char in enumerate(b"0123456789ABCDEF"):
    _HEX[_char] = _HEX[_char | 0x20] = _digit  # | 0x20: the lower-case letter (digits stay)
_NEWLINE, _COMMA, _PERCENT, _SLASH = 0x0A, 0x2C, 0x25, 0x2F
_SHORT_RUN = 32  # raw mode: runs of fewer lines hash their ids one by one
_UTF8_RETRIES = 16  # decode errors located one by one in a chunk; past that, lines are just sent on


class CleanRun(NamedTuple):
    """Consecutive lines as they are written: buf[start:end], ``rows`` of them, their ids' hashes;
    the chunk's next line starts at ``after``."""

    after: int
    buf: bytes
    start: int
    end: int
    rows: int
    hashes: Hashes


class ChunkScan(Protocol):
    def run(self, pos: int) -> CleanRun | None:
        """The run of clean lines starting at line start ``pos``, or None when that line is not one."""


class FastPath(Protocol):
    def scan(self, work: bytes, seed: int) -> ChunkScan:
        """What the fast path can take of ``work`` (whole lines); ids hashed with ``seed``."""


def build_fast_path(settings: Settings, names: list[str], prefix_len: int) -> FastPath | None:
    """The fast path for this header, or None when no line can be short enough for it."""
    raw = settings.input_mode == "raw"
    # Longest line it may accept: fits in a batch with the header and (once decoded) under
    # the profile limit; raw mode may triple in size when escaped.
    fit = settings.batch_max_bytes - prefix_len - 2
    max_len = min(settings.row_max_bytes, fit // 3 if raw else fit)
    if not tuning.FAST_PATH or max_len < 1:
        return None
    third_party = names[0] == "thirdPartyId"
    if raw:
        return RawFastPath(raw_line_pattern(third_party, len(names), max_len, settings.id_max_chars))
    return EncodedFastPath(third_party, len(names), max_len, settings.id_max_chars)


# ---- encoded mode: numpy over the chunk ----------------------------------------------------------


class EncodedFastPath:
    """Lines the per-row path would accept unchanged: of 1..max_len bytes; 2..columns fields; an id of
    1..id_max bytes (so at most id_max characters decoded; a longer one in bytes takes the per-row
    path), without '/' or %2B/%2F in a thirdPartyId; a non-empty value; only printable ASCII but
    space " # & + = ?; each '%' followed by two hex digits, and the escaped bytes valid UTF-8."""

    def __init__(self, third_party: bool, columns: int, max_len: int, id_max: int) -> None:
        self.third_party = third_party
        self.columns = columns
        self.max_len = max_len
        self.id_max = id_max

    def scan(self, work: bytes, seed: int) -> ChunkScan:
        return _EncodedScan(self, work, seed)


class _EncodedScan:
    def __init__(self, rules: EncodedFastPath, work: bytes, seed: int) -> None:
        self.work = work
        data = np.frombuffer(work, dtype=np.uint8)
        # One pass over the chunk marks every byte that is not plain: newlines, commas, '%', '/' in
        # a thirdPartyId file, and bytes no clean line holds (outside '!'..'~', or " # & + = ?).
        marked = data - np.uint8(0x21) > np.uint8(0x7E - 0x21)  # wraps below '!'
        for byte in _MARKED + (b"/" if rules.third_party else b""):
            marked |= data == byte
        marks = np.flatnonzero(marked)
        del marked
        kind = data[marks]
        is_newline = kind == _NEWLINE
        at_nl = np.flatnonzero(is_newline)  # index in marks of each line's newline
        newlines = marks[at_nl]
        self.lines = lines = len(newlines)
        starts = np.empty(lines, dtype=np.int64)
        starts[:1] = 0
        starts[1:] = newlines[:-1] + 1
        first = np.empty(lines, dtype=np.int64)  # index in marks of each line's first mark
        first[:1] = 0
        first[1:] = at_nl[:-1] + 1
        # Marks that are not separators ('%', '/', stray bytes), with their line.
        other = np.flatnonzero(~is_newline & (kind != _COMMA))
        other_line = np.cumsum(is_newline, dtype=np.int32)[other]  # int32: several times faster
        del is_newline
        commas = at_nl - first - np.bincount(other_line, minlength=lines)
        # The id ends at the line's first comma: its first mark, or past the escapes in the id.
        in_id = np.flatnonzero(kind[first] == _PERCENT)
        while len(in_id):
            first[in_id] += 1
            more = kind[first[in_id]] == _PERCENT
            more &= marks[first[in_id]] - starts[in_id] <= rules.id_max  # longer: not clean anyway
            in_id = in_id[more]
        id_end = marks[first]
        id_len = id_end - starts
        good = kind[first] == _COMMA
        good &= commas < rules.columns
        good &= id_len >= 1
        good &= id_len <= rules.id_max
        good &= newlines - starts <= rules.max_len
        good &= newlines - id_end > commas  # a byte after the id that is not a comma: a value
        if len(other):
            other_kind = kind[other]
            other_at = marks[other]
            del marks, kind, at_nl, first, commas, other
            stray = other_kind != _PERCENT
            if rules.third_party:
                slash = other_kind == _SLASH
                stray &= ~slash
                slash &= other_at < id_end[other_line]  # a '/' in the id
                good[other_line[slash]] = False
            good[other_line[stray]] = False
            escape = other_kind == _PERCENT
            if escape.any():
                percents, line = other_at[escape], other_line[escape]
                _check_escapes(data, percents, line, id_end if rules.third_party else None, good)
        self.starts = starts
        self.good = good
        self.stops = np.flatnonzero(~good)  # the lines that end a run
        self.hashes = np.zeros(lines, dtype=np.uint64)
        clean = np.flatnonzero(good)
        if len(clean):
            self.hashes[clean] = hash_ids(work, starts[clean], id_len[clean], seed)

    def run(self, pos: int) -> CleanRun | None:
        first = int(np.searchsorted(self.starts, pos))
        if first >= self.lines or not self.good[first]:
            return None
        stops = self.stops
        k = int(np.searchsorted(stops, first))
        stop = int(stops[k]) if k < len(stops) else self.lines
        end = int(self.starts[stop]) if stop < self.lines else len(self.work)
        return CleanRun(end, self.work, pos, end, stop - first, self.hashes[first:stop])


def _check_escapes(
    data: NDArray[np.uint8],
    percents: Positions,
    line: Positions,
    id_end: Positions | None,
    good: NDArray[np.bool_],
) -> None:
    """Mark not clean the lines (``line`` of each '%') with a '%' not followed by two hex digits, with
    %2B or %2F in the id (``id_end`` given: a thirdPartyId), or whose escaped bytes are not UTF-8."""
    high = _HEX[data[percents + 1]]  # a '%' is never the chunk's last byte: that is a newline
    low = _HEX[data[np.minimum(percents + 2, len(data) - 1)]]
    bad = (high | low) > 15
    if bad.any():
        good[line[bad]] = False
    value = (high << 4) | low
    if id_end is not None:
        reserved = (value == 0x2B) | (value == 0x2F)  # '+' and '/'
        reserved &= percents < id_end[line]
        good[line[reserved]] = False
    if not (value >= 0x80).any():
        return  # escapes of ASCII bytes only: valid UTF-8
    # The escaped bytes in order, a newline between escapes that do not follow each other directly
    # (any byte between them is ASCII, and so is the newline): the whole is valid UTF-8 exactly
    # when the escapes of every field decode to valid UTF-8.
    count = len(percents)
    place = np.zeros(count, dtype=np.int64)  # where each escaped byte goes in text
    place[1:] = percents[1:] != percents[:-1] + 3
    np.cumsum(place, out=place)
    place += np.arange(count)
    seq = np.full(int(place[-1]) + 1, _NEWLINE, dtype=np.uint8)
    seq[place] = value
    text = seq.tobytes()
    del seq
    at = 0
    for _ in range(_UTF8_RETRIES):
        try:
            str(memoryview(text)[at:], "utf-8")
        except UnicodeDecodeError as exc:
            failed = int(line[np.searchsorted(place, at + exc.start)])  # exc.start is an escaped byte
            good[failed] = False
            after = int(np.searchsorted(line, failed, side="right"))  # the next line's first escape
            if after == count:
                return
            at = int(place[after])
            continue
        return
    # Too many bad lines to locate one by one: every line with a high escape from here on is sent on.
    rest = int(np.searchsorted(place, at))
    good[line[rest:][value[rest:] >= 0x80]] = False


# ---- raw mode: one regex ----------------------------------------------------------------------------


def raw_line_pattern(third_party: bool, columns: int, max_len: int, id_max: int) -> re.Pattern[bytes]:
    """A run of lines that the per-row path would only percent-encode (raw mode)."""
    # Lookaheads: line length bound; id of 1..id_max bytes (so at most id_max characters once
    # decoded; a longer id in bytes takes the per-row path) followed by a non-empty value.
    head = rb"(?=[^\n]{1,%d}+\n)(?=[^,\n]{1,%d}+,,*+[^,\n])" % (max_len, id_max)
    # Words without control chars, '"' or ',', separated by inner spaces (edges would be trimmed).
    word = rb'[^\x00-\x20",\x7f]'
    id_word = rb'[^\x00-\x20",\x7f+/]' if third_party else word
    ident = id_word + rb"++(?: ++" + id_word + rb"++)*+"
    value = rb"(?:" + word + rb"++(?: ++" + word + rb"++)*+)?"
    line = head + ident + rb"(?:," + value + rb"){0,%d}+\n" % (columns - 1)
    return re.compile(rb"(?:" + line + rb")*+")


class RawFastPath:
    def __init__(self, good: re.Pattern[bytes]) -> None:
        self.good = good

    def scan(self, work: bytes, seed: int) -> ChunkScan:
        return _RawScan(self.good, work, seed)


class _RawScan:
    def __init__(self, good: re.Pattern[bytes], work: bytes, seed: int) -> None:
        self.good, self.work, self.seed = good, work, seed

    def run(self, pos: int) -> CleanRun | None:
        work = self.work
        end = self.good.match(work, pos).end()  # type: ignore[union-attr]  # *+ always matches
        if end > pos:
            end = _utf8_prefix(work, pos, end)
        if end == pos:
            return None
        buf = _RAW_NEEDS_ESCAPE.sub(lambda m: b"".join(map(PERCENT.__getitem__, m[0])), work[pos:end])
        rows = buf.count(b"\n")
        if rows < _SHORT_RUN:  # numpy's fixed cost per call would outweigh a few ids hashed one by one
            ids = [line[: line.index(b",")] for line in buf.split(b"\n")[:-1]]
            hashes = np.array([hash_id(ident, self.seed) for ident in ids], dtype=np.uint64)
        else:
            hashes = hash_ids(buf, *_line_ids(buf), self.seed)
        return CleanRun(end, buf, 0, len(buf), rows, hashes)


def _line_ids(buf: bytes) -> tuple[Positions, Positions]:
    """Start and length of each line's id in ``buf``: whole lines, each with a comma after its id."""
    data = np.frombuffer(buf, dtype=np.uint8)
    separators = data == _NEWLINE
    separators |= data == _COMMA
    seps = np.flatnonzero(separators)
    at_nl = np.flatnonzero(data[seps] == _NEWLINE)
    starts = np.empty(len(at_nl), dtype=np.int64)
    starts[:1] = 0
    starts[1:] = seps[at_nl[:-1]] + 1
    first = np.empty(len(at_nl), dtype=np.int64)
    first[:1] = 0
    first[1:] = at_nl[:-1] + 1
    return starts, seps[first] - starts


def _utf8_prefix(work: bytes, pos: int, end: int) -> int:
    """End of the leading lines of work[pos:end] that are valid UTF-8."""
    try:
        work[pos:end].decode()
    except UnicodeDecodeError as exc:
        return work.rfind(b"\n", pos, pos + exc.start) + 1 or pos
    return end
