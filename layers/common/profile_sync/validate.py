"""Validate a visitor-attribute CSV and split its accepted rows into Bulk Profile Update batch files.

Pure Python, stdlib only. The input is read once, in large chunks, and never held whole in memory.

Input: UTF-8 (a leading BOM is dropped), LF or CRLF line endings (CRLF is normalised to LF, also
inside quoted fields), RFC 4180 quoting, an optional final newline. An empty line is not a row, but
it still counts for line numbers. Line numbers are 1-based physical lines (header = line 1); a
record that spans lines (newline inside quotes) carries the line where it starts.

Header (first non-empty line): the first column is exactly ``pcId`` or ``thirdPartyId``; then at
least one parameter column. Names are trimmed of spaces and lose a ``profile.`` prefix (with a
warning). Anything else rejects the whole file (``ValidationResult.file_error``).

Input modes (``Settings.input_mode``):

- ``encoded`` (default): ids, names and values are already URL-encoded UTF-8 and are written as
  they are. Inside a quoted field a raw ``,`` or ``"`` is allowed and written as ``%2C`` / ``%22``
  (batch files never contain quotes); anything else that is not URL-encoding is rejected.
  Target form-decodes what it receives (``&`` separates parameters, ``=`` separates a name from
  its value, ``#`` ends a URL, ``+`` is a space), so a raw ``&``, ``#``, ``?`` or ``=`` can only be
  that character itself: it is written percent-encoded (``%26``, ``%23``, ``%3F``, ``%3D``). A raw
  ``+`` is ambiguous (a space to a form encoder, a plus sign in plain text) and is rejected.
- ``raw``: ids, names and values are plain text; the engine URL-encodes them like
  ``urllib.parse.quote(text, safe="")``.

Every data row ends in exactly one of: accepted (written to a batch), skipped (nothing to send:
every value is empty, which Target ignores), rejected (written to ``rejects.csv`` with one reason).
Checks run in this order and the first failure is the reason:

=========================  ==========================================================================
reason code                meaning
=========================  ==========================================================================
``invalid_quoting``        a quoted field is never closed, or text follows its closing quote
``invalid_utf8``           the line's bytes are not valid UTF-8
``too_many_fields``        more fields than the header has columns
``empty_id``               the id (first field) is empty
``invalid_encoding``       encoded mode: a ``%`` not followed by two hex digits, a raw space, control
                           character, non-ASCII character or ``"`` outside quotes, or percent-escapes
                           that decode to invalid UTF-8 (id or value)
``ambiguous_plus``         encoded mode: a raw ``+`` in the id or a value (write ``%20`` for a space,
                           ``%2B`` for a plus sign)
``control_character``      raw mode: a control character (C0 or DEL) in the id, or in a value one other
                           than tab, line feed or carriage return (text layout in a quoted value)
``id_too_long``            the decoded id is longer than ``Settings.id_max_chars`` characters
``invalid_third_party_id`` a thirdPartyId holding ``+`` or ``/`` once decoded (raw, ``%2B``, ``%2F``)
``row_too_large``          decoded parameter values over ``Settings.row_max_bytes`` bytes, or the
                           written row cannot fit in a batch file together with the header
=========================  ==========================================================================

rejects.csv lists the first ``Settings.rejects_max_rows`` rejected rows, each with a copy of its
line cut to ``Settings.rejects_original_max_bytes`` bytes (marked ``…[cut: N bytes]``); every
rejected row is counted (``rejected``, ``reasons``) and ``rejected_unlisted`` says how many are
not listed, so a small compressed file of bad rows can't fill the disk. Every cell is made safe for
spreadsheets by ``spreadsheet_safe``, which the job's report uses too.

Duplicate ids: the number of accepted rows whose id (as written in the batch) already appeared in an
earlier accepted row. Counted exactly (up to 64-bit hash collisions) by ``_DuplicateCounter``: each
id's 64-bit hash goes to one of 128 partitions by its top bits and is spilled to that partition's
temporary file; at the end each partition is counted with a set, and one too large for a set is
split again by its next bits. Memory is bounded by constants, whatever the file size: the hashes
buffered before a spill (``_DUP_BUFFER``, 2 MB, plus those of one read chunk), 128 file buffers
(1 MB), and at the end one set of at most ``_DUP_SET_MAX`` hashes (about 10 MB; a split holds one
such block, at most as many buffered hashes and 1 MB of file buffers per level, and a level is only
needed past 2**24 accepted rows, 128 x ``_DUP_SET_MAX``, and again past 2**31). Disk: 8 bytes per
accepted row, at most twice that while a partition is split.

Speed: clean lines are recognised by one compiled regex that runs over whole chunks and are copied
to the batch file in bulk; only lines that fail it (quotes, spaces, bad rows, ...) take the per-row
path, which is the reference for every rule.
"""

from __future__ import annotations

import csv
import re
import sys
import tempfile
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote_to_bytes

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

# Tunables; tests shrink them to exercise chunk boundaries and the fast/slow split.
_CHUNK_SIZE = 2 * 1024 * 1024  # larger chunks are no faster and cost peak memory
_MIN_RECORD_LIMIT = 1024 * 1024  # a line or quoted record longer than this is never held whole
# Duplicate counter: partitions per level, hashes buffered before a spill, hashes per in-memory set.
_DUP_PARTITION_BITS = 7  # 128 partition files
_DUP_BUFFER = 1 << 18  # 2 MB of buffered hashes
_DUP_SET_MAX = 1 << 17  # a set of 131,072 hashes: about 10 MB
_FAST_PATH = True

_BOM = b"\xef\xbb\xbf"
_SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Raw mode: no control character in an id; in a value only tab, LF and CR (a quoted value's layout).
_ID_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_VALUE_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NAMES_SHOWN = 5  # header names quoted in a warning; the rest are counted
_BAD_ENCODED = re.compile(rb'%(?![0-9A-Fa-f]{2})|[^\x21-\x7e]|"')
_ID_AFTER_NEWLINE = re.compile(rb"\n([^,\n]*)")
_RAW_NEEDS_ESCAPE = re.compile(rb"[^A-Za-z0-9_.~\-,\n]+")
# Encoded mode: characters Target's form decoding would take as syntax, written percent-encoded.
_FORM_SYNTAX = re.compile(rb"[&#?=]")
_PERCENT = [b"%%%02X" % i for i in range(256)]
# Percent-escaped multi-byte UTF-8 sequence, minus its leading '%' (RFC 3629 table).
_CONT = rb"%[89AaBb][0-9A-Fa-f]"
_UTF8_PCT = (
    rb"(?:[Cc][2-9A-Fa-f]@|[Dd][0-9A-Fa-f]@"
    rb"|[Ee]0%[AaBb][0-9A-Fa-f]@|[Ee][1-9A-Ca-cEeFf]@@|[Ee][Dd]%[89][0-9A-Fa-f]@"
    rb"|[Ff]0%[9AaBb][0-9A-Fa-f]@@|[Ff][1-3]@@@|[Ff]4%8[0-9A-Fa-f]@@)"
).replace(b"@", _CONT)


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


def validate_and_split(
    stream: BinaryIO,
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


def _shown(name: str, limit: int = 64) -> str:
    """A header name short enough for a message (a header line may be a megabyte)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _encoding_problem(value: bytes) -> str | None:
    """Why ``value`` is not URL-encoded UTF-8, or None."""
    m = _BAD_ENCODED.search(value)
    if m is not None:
        c = m[0]
        if c == b"%":
            return "'%' not followed by two hex digits"
        if c == b" ":
            return "raw space (write %20)"
        if c == b'"':
            return "raw '\"' outside quotes (write %22)"
        if c[0] >= 0x80:
            return "raw non-ASCII character (percent-encode its UTF-8 bytes)"
        return f"control character 0x{c[0]:02X}"
    if b"%" in value:
        try:
            unquote_to_bytes(value).decode()
        except UnicodeDecodeError:
            return "percent-escapes do not decode to valid UTF-8"
    return None


_PLUS_DETAIL = "raw '+' is a space to Target but a plus sign in plain text: write %20 or %2B"


def _escape_form_syntax(value: bytes) -> bytes:
    """Percent-encode & # ? = : in an encoded value they can only stand for themselves."""
    return _FORM_SYNTAX.sub(lambda m: _PERCENT[m[0][0]], value) if _FORM_SYNTAX.search(value) else value


def _parse_record(buf: bytes, pos: int) -> tuple[list[bytes], list[bool], int, str | None] | None:
    """Split the RFC 4180 record at ``pos`` (``buf`` ends with a newline).

    Returns (fields, quoted flags, index after the record's newline, quoting error or None), or
    None when a quoted field is still open at the end of ``buf``. Fields are not trimmed.
    """
    fields: list[bytes] = []
    quoted: list[bool] = []
    i = pos
    while True:
        j = i
        while buf[j] == 0x20:
            j += 1
        if buf[j] != 0x22:  # unquoted field: a '"' inside it is plain data
            nl = buf.find(b"\n", i)
            comma = buf.find(b",", i, nl)
            fields.append(buf[i : comma if comma >= 0 else nl])
            quoted.append(False)
            if comma < 0:
                return fields, quoted, nl + 1, None
            i = comma + 1
            continue
        parts = []
        k = j + 1
        while True:
            q = buf.find(b'"', k)
            if q < 0:
                return None
            if buf[q + 1] == 0x22:  # "" is an escaped quote
                parts.append(buf[k : q + 1])
                k = q + 2
                continue
            parts.append(buf[k:q])
            k = q + 1
            break
        while buf[k] == 0x20:
            k += 1
        fields.append(b"".join(parts))
        quoted.append(True)
        if buf[k] == 0x2C:
            i = k + 1
        elif buf[k] == 0x0A:
            return fields, quoted, k + 1, None
        else:
            nl = buf.find(b"\n", k)
            return fields, quoted, nl + 1, f"field {len(fields)}: text after the closing quote"


def _good_line_pattern(
    mode: str, third_party: bool, columns: int, max_len: int, id_max: int
) -> re.Pattern[bytes]:
    """A run of lines that the per-row path would accept unchanged (encoded) or only escape (raw).

    Conservative: any line it does not match simply takes the per-row path.
    """
    # Lookaheads: line length bound; id of 1..id_max bytes (so at most id_max characters once
    # decoded; a longer id in bytes takes the per-row path) followed by a non-empty value.
    head = rb"(?=[^\n]{1,%d}+\n)(?=[^,\n]{1,%d}+,,*+[^,\n])" % (max_len, id_max)
    if mode == "encoded":
        # Printable ASCII except space " % , (and / in a thirdPartyId); %XX below 0x80 only so
        # that escapes of non-ASCII bytes get the UTF-8 check.
        # Also without & # ? = + (escaped or rejected by the per-row path).
        plain = rb"[!$'-*\--<>@-~]"
        id_plain = rb"[!$'-*\-.0-<>@-~]" if third_party else plain
        ascii_pct = rb"(?!2[BbFf])[0-7][0-9A-Fa-f]" if third_party else rb"[0-7][0-9A-Fa-f]"
        ident = id_plain + rb"*+(?:%(?:" + ascii_pct + rb"|" + _UTF8_PCT + rb")" + id_plain + rb"*+)*+"
        value = plain + rb"*+(?:%(?:[0-7][0-9A-Fa-f]|" + _UTF8_PCT + rb")" + plain + rb"*+)*+"
    else:
        # Words without control chars, '"' or ',', separated by inner spaces (edges would be trimmed).
        word = rb'[^\x00-\x20",\x7f]'
        id_word = rb'[^\x00-\x20",\x7f+/]' if third_party else word
        ident = id_word + rb"++(?: ++" + id_word + rb"++)*+"
        value = rb"(?:" + word + rb"++(?: ++" + word + rb"++)*+)?"
    line = head + ident + rb"(?:," + value + rb"){0,%d}+\n" % (columns - 1)
    return re.compile(rb"(?:" + line + rb")*+")


class _DuplicateCounter:
    """Exact count of repeated 64-bit hashes, in memory bounded by constants.

    Each hash goes to one of ``2**_DUP_PARTITION_BITS`` partitions by its top bits (equal hashes
    always meet in the same partition). Partitions are buffered in ``array('q')`` (up to
    ``_DUP_BUFFER`` hashes in all, plus the hashes of one read chunk) and then appended to one
    temporary file per partition. At the end each partition is counted on its own as
    ``len(hashes) - len(set(hashes))``; a partition of more than ``_DUP_SET_MAX`` hashes is first
    split again by its next bits into sub-partition files, one block of ``_DUP_SET_MAX`` hashes at a
    time (each block deduplicated in a set on the way, so repeats of one id shrink at once). Every
    step is a C-level operation over whole arrays (``bytes.translate`` for the partition keys,
    ``map`` for the dispatch, ``set`` for the count), never a Python loop per hash.
    """

    def __init__(self, spill_dir: Path) -> None:
        self._dir = spill_dir
        self._bits = _DUP_PARTITION_BITS  # 1..8
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
        if self._buffered >= _DUP_BUFFER:
            self._flush()

    def add_one(self, h: int) -> None:
        self._parts[h >> self._shift].append(h)  # a negative index is the same partition
        self._buffered += 1
        if self._buffered >= _DUP_BUFFER:
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
        if n <= _DUP_SET_MAX:
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
                block.fromfile(spill, min(n, _DUP_SET_MAX))
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
        self.raw = settings.input_mode == "raw"
        self.result = ValidationResult(source_name=source_name, input_mode=settings.input_mode)
        self.line = 1  # source line number of the next unprocessed byte
        self.header_done = False
        self.names: list[str] = []
        self.prefix = b""
        self.good: re.Pattern[bytes] | None = None
        self.batch: _Batch | None = None
        self.record_limit = max(_MIN_RECORD_LIMIT, 4 * settings.row_max_bytes)
        # Bytes of a rejected line kept in rejects.csv; rows listed there (None = no limit).
        self.original_cap = settings.rejects_original_max_bytes or self.record_limit
        self.rejects_left = settings.rejects_max_rows or None
        rejects_path = out_dir / "rejects.csv"
        self.result.rejects_path = str(rejects_path)
        self.rejects_file = rejects_path.open("w", encoding="utf-8", newline="")
        self.rejects = csv.writer(self.rejects_file)
        self.rejects.writerow(REJECTS_HEADER)
        self.duplicates = _DuplicateCounter(out_dir)

    # ---- reading -------------------------------------------------------------------------------

    def run(self, stream: BinaryIO) -> None:
        pending = b""
        started = False
        discarding: list | None = None  # [line, kept prefix, length so far] of an over-long line
        while True:
            data = stream.read(_CHUNK_SIZE)
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
                discarding = [self.line, pending[: self.original_cap], len(pending)]
                pending = b""
            if eof:
                break
        if not self.header_done:
            raise FileRejected(
                f"{self.source}: no header: the file is empty or has only blank lines; "
                "the first line must name the columns, starting with pcId or thirdPartyId"
            )

    def _process(self, work: bytes, eof: bool) -> int:
        """Handle the records in ``work``; return where an unfinished record starts (or len)."""
        pos = 0
        n = len(work)
        while pos < n:
            if self.good is not None:
                end = self.good.match(work, pos).end()
                if end > pos and self.raw:
                    end = self._utf8_prefix(work, pos, end)
                if end > pos:
                    self._emit_clean(work, pos, end)
                    pos = end
                    continue
            nxt = self._slow(work, pos, eof)
            if nxt < 0:
                return pos
            pos = nxt
        return n

    # ---- fast path -----------------------------------------------------------------------------

    @staticmethod
    def _utf8_prefix(work: bytes, pos: int, end: int) -> int:
        """End of the leading lines of work[pos:end] that are valid UTF-8."""
        try:
            work[pos:end].decode()
        except UnicodeDecodeError as exc:
            return work.rfind(b"\n", pos, pos + exc.start) + 1 or pos
        return end

    def _emit_clean(self, work: bytes, pos: int, end: int) -> None:
        if self.raw:
            buf = _RAW_NEEDS_ESCAPE.sub(lambda m: b"".join(map(_PERCENT.__getitem__, m[0])), work[pos:end])
            pos, end = 0, len(buf)
        else:
            buf = work
        hashes = [hash(buf[pos : buf.index(b",", pos)])]  # one id per line
        hashes += map(hash, _ID_AFTER_NEWLINE.findall(buf, pos, end - 1))
        self.duplicates.add(hashes)
        rows = len(hashes)
        first_line = self.line
        self.line += rows
        self.result.received += rows
        self.result.accepted += rows
        self._write_rows(buf, pos, end, rows, first_line)

    def _write_rows(self, buf: bytes, start: int, end: int, rows: int, first_line: int) -> None:
        """Write consecutive rows buf[start:end], splitting at batch limits."""
        view = memoryview(buf)
        max_rows, max_bytes = self.settings.batch_max_rows, self.settings.batch_max_bytes
        while start < end:
            batch = self.batch or self._open_batch()
            room_bytes = max_bytes - 1 - batch.bytes  # a batch file stays strictly under the limit
            cut, count = end, rows
            if end - start > room_bytes:
                cut = buf.rfind(b"\n", start, start + max(room_bytes, 0)) + 1
                if cut <= start:
                    if not batch.rows:  # the fast path only takes rows that fit an empty batch
                        raise AssertionError("fast-path row larger than a batch")
                    self._close_batch()
                    continue
                count = buf.count(b"\n", start, cut)
            room_rows = max_rows - batch.rows
            if count > room_rows:
                cut = re.compile(rb"(?:[^\n]*+\n){%d}" % room_rows).match(buf, start).end()
                count = room_rows
            batch.add(view[start:cut], count, first_line)
            start, rows, first_line = cut, rows - count, first_line + count
            if batch.rows >= max_rows:
                self._close_batch()

    # ---- per-record path -----------------------------------------------------------------------

    def _slow(self, work: bytes, pos: int, eof: bool) -> int:
        """Handle the record at ``pos``; return the index after it, or -1 to wait for more data."""
        nl = work.find(b"\n", pos)
        line = self.line
        if nl == pos:  # blank line: not a row
            self.line += 1
            return pos + 1
        if work.find(b'"', pos, nl) < 0:
            fields, quoted, end, error = work[pos:nl].split(b","), None, nl + 1, None
        else:
            parsed = _parse_record(work, pos)
            if parsed is None:
                if not eof and len(work) - pos <= self.record_limit:
                    return -1
                # Never closed: give up on this line only and resync at the next one.
                fields, quoted, end, error = [], None, nl + 1, "a quoted field is never closed"
            else:
                fields, quoted, end, error = parsed
        record = work[pos : end - 1]
        self.line += record.count(b"\n") + 1
        if not self.header_done:
            if error:
                raise FileRejected(f"{self.source}: line {line}: header: {error}")
            self._header(fields, quoted, record, line)
            return end
        self.result.received += 1
        if error:
            self._reject(line, "invalid_quoting", error, record)
        else:
            self._row(fields, quoted, record, line)
        return end

    def _row(self, fields: list[bytes], quoted: list[bool] | None, record: bytes, line: int) -> None:
        settings = self.settings
        try:
            record.decode()
        except UnicodeDecodeError as exc:
            self._reject(line, "invalid_utf8", f"byte {exc.start + 1} of the row is not valid UTF-8", record)
            return
        if len(fields) > len(self.names):
            detail = f"{len(fields)} fields, the header has {len(self.names)} columns"
            self._reject(line, "too_many_fields", detail, record)
            return
        values = [f.strip(b" ") for f in fields]
        if not values[0]:
            self._reject(line, "empty_id", f"field 1 ({self.names[0]}) is empty", record)
            return
        out: list[bytes] = []
        decoded: list[bytes] = []
        for i, value in enumerate(values):
            if not value:
                out.append(value)
                decoded.append(value)
                continue
            if self.raw:
                control = (_VALUE_CONTROL if i else _ID_CONTROL).search(value)
                if control is not None:
                    detail = f"field {i + 1} ({self.names[i]}): control character 0x{control[0][0]:02X}"
                    self._reject(line, "control_character", detail, record)
                    return
                text = value.decode()
                out.append(quote(text, safe="").encode())
                decoded.append(value)
                continue
            written = value.replace(b",", b"%2C").replace(b'"', b"%22") if quoted and quoted[i] else value
            problem = _encoding_problem(written)
            if problem:
                self._reject(line, "invalid_encoding", f"field {i + 1} ({self.names[i]}): {problem}", record)
                return
            if b"+" in written and not (i == 0 and self.names[0] == "thirdPartyId"):
                detail = f"field {i + 1} ({self.names[i]}): {_PLUS_DETAIL}"
                self._reject(line, "ambiguous_plus", detail, record)
                return
            written = _escape_form_syntax(written)
            out.append(written)
            decoded.append(unquote_to_bytes(written) if b"%" in written else written)
            if i == 0 and not self._id_ok(decoded[0], line, record):
                return
        if self.raw and not self._id_ok(decoded[0], line, record):
            return
        if not any(values[1:]):
            self.result.skipped += 1
            return
        size = sum(len(v) for v in decoded[1:])
        if size > settings.row_max_bytes:
            detail = f"values are {size} bytes decoded, over the {settings.row_max_bytes}-byte profile limit"
            self._reject(line, "row_too_large", detail, record)
            return
        row = b",".join(out) + b"\n"
        if len(self.prefix) + len(row) >= settings.batch_max_bytes:
            detail = (
                f"the row ({len(row)} bytes) and the header cannot fit in a batch "
                f"under {settings.batch_max_bytes} bytes"
            )
            self._reject(line, "row_too_large", detail, record)
            return
        self.result.accepted += 1
        self.duplicates.add_one(hash(out[0]))
        batch = self.batch
        if batch is not None and (
            batch.rows >= settings.batch_max_rows or batch.bytes + len(row) >= settings.batch_max_bytes
        ):
            self._close_batch()
        (self.batch or self._open_batch()).add(row, 1, line)
        if self.batch is not None and self.batch.rows >= settings.batch_max_rows:
            self._close_batch()

    def _id_ok(self, ident: bytes, line: int, record: bytes) -> bool:
        text = ident.decode()  # the caller checked the UTF-8
        if len(text) > self.settings.id_max_chars:
            detail = f"field 1 ({self.names[0]}) is {len(text)} characters, over {self.settings.id_max_chars}"
            self._reject(line, "id_too_long", detail, record)
            return False
        if self.names[0] == "thirdPartyId" and ("+" in text or "/" in text):
            self._reject(line, "invalid_third_party_id", "a thirdPartyId may not contain '+' or '/'", record)
            return False
        return True

    def _header(self, fields: list[bytes], quoted: list[bool] | None, record: bytes, line: int) -> None:
        where = f"{self.source}: line {line}: header"
        try:
            names = [f.decode().strip(" ") for f in fields]
        except UnicodeDecodeError:
            raise FileRejected(f"{where}: not valid UTF-8") from None
        first = names[0]
        if first.lower() in EXPERIENCE_CLOUD_IDS:
            raise FileRejected(
                f"{where}: first column '{first}' is an Experience Cloud id: Target's bulk API does not "
                "accept Experience Cloud ids; use pcId or thirdPartyId"
            )
        if first not in ID_COLUMNS:
            # Name the column only when it is a misspelt id header: in a file without a header this
            # field is a visitor id, which must not reach logs or messages.
            misspelt = first.lower() in {
                n.lower() for n in (*ID_COLUMNS, "mbox3rdPartyId", "mboxPC", "tntId")
            }
            found = f"is '{first}'" if misspelt else "is not pcId or thirdPartyId"
            raise FileRejected(
                f"{where}: the first column {found}; the first line must be a header whose first column is "
                "exactly pcId (Target's visitor id) or thirdPartyId (your own id, mbox3rdPartyId)"
            )
        if len(names) == 1:
            raise FileRejected(f"{where}: no parameter columns after {first}; add at least one")
        most = self.settings.header_max_columns
        if most and len(names) - 1 > most:
            raise FileRejected(
                f"{where}: {len(names) - 1:,} parameter columns, over the maximum of {most:,} "
                "(HEADER_MAX_COLUMNS); split the file into files with fewer columns"
            )
        params: list[str] = []
        prefixed: list[str] = []
        for number, given in enumerate(names[1:], start=2):
            name = given.removeprefix("profile.")
            if name != given:
                prefixed.append(given)
            if not name:
                raise FileRejected(f"{where}: column {number} has an empty name; give every column a name")
            if self.raw:
                if _ID_CONTROL.search(name.encode()):
                    raise FileRejected(f"{where}: column {number} name holds a control character")
                name = quote(name, safe="")
            else:
                problem = _encoding_problem(name.encode()) or ("raw '+'" if "+" in name else None)
                if problem:
                    raise FileRejected(
                        f"{where}: column {number} name is not URL-encoded: {problem}; "
                        "URL-encode it or use input mode raw"
                    )
                name = _escape_form_syntax(name.encode()).decode()
            params.append(name)
        seen: set[str] = set()
        for name in [first, *params]:
            if name in seen:
                raise FileRejected(
                    f"{where}: column name '{_shown(name)}' appears more than once; names must be unique"
                )
            seen.add(name)
        if prefixed:
            # A count and the first names: the warning goes into the job record (DynamoDB: 400 KB).
            shown = ", ".join(_shown(name) for name in prefixed[:_NAMES_SHOWN])
            more = len(prefixed) - _NAMES_SHOWN
            self.result.warnings.append(
                f"{where}: removed the 'profile.' prefix from {len(prefixed):,} "
                f"{'column' if len(prefixed) == 1 else 'columns'} ({shown}"
                f"{f' and {more:,} more' if more > 0 else ''}) (Target adds it itself)"
            )
        self.names = [first, *params]
        self.result.id_column = first
        self.result.columns = params
        self.prefix = b"batch=" + ",".join(self.names).encode() + b"\n"
        self.header_done = True
        # Longest line the fast path may accept: fits in a batch with the header and (once
        # decoded) under the profile limit; raw mode may triple in size when escaped.
        fit = self.settings.batch_max_bytes - len(self.prefix) - 2
        max_len = min(self.settings.row_max_bytes, fit // 3 if self.raw else fit)
        if _FAST_PATH and max_len >= 1:
            self.good = _good_line_pattern(
                self.settings.input_mode,
                first == "thirdPartyId",
                len(self.names),
                max_len,
                self.settings.id_max_chars,
            )

    # ---- outputs -------------------------------------------------------------------------------

    def _reject(
        self, line: int, reason: str, detail: str, record: bytes, original: str | None = None
    ) -> None:
        result = self.result
        result.rejected += 1
        result.reasons[reason] = result.reasons.get(reason, 0) + 1
        if self.rejects_left is not None:
            if not self.rejects_left:  # counted above, not listed: the disk stays bounded
                result.rejected_unlisted += 1
                return
            self.rejects_left -= 1
        if original is None:
            original = self._original(record, len(record))
        self.rejects.writerow([line, reason, spreadsheet_safe(detail), spreadsheet_safe(original)])

    def _original(self, kept: bytes, length: int) -> str:
        return cut_original(kept, length, self.original_cap)

    def _reject_overlong(self, line: int, kept: bytes, length: int) -> None:
        if not self.header_done:
            raise FileRejected(f"{self.source}: line {line}: header is longer than {self.record_limit} bytes")
        self.result.received += 1
        self.line = line + 1
        detail = f"the line is {length:,} bytes, longer than {self.record_limit:,}"
        self._reject(line, "row_too_large", detail, b"", self._original(kept, length))

    def _open_batch(self) -> _Batch:
        index = len(self.result.batches) + 1
        path = self.out_dir / f"batch-{index:05d}.txt"
        self.batch = _Batch(index, path, self.prefix)
        return self.batch

    def _close_batch(self) -> None:
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
        self.result.batches.append(info)
        if self.on_batch is not None:
            self.on_batch(info)

    def finish(self) -> None:
        result = self.result
        self._close_batch()
        result.duplicate_ids = self.duplicates.count()
        if result.rejected_unlisted:
            result.warnings.append(unlisted_warning(self.source, self.settings, result.rejected_unlisted))
        if result.duplicate_ids:
            result.warnings.append(
                f"{self.source}: {result.duplicate_ids} "
                f"{'row repeats' if result.duplicate_ids == 1 else 'rows repeat'} an id from an earlier row; "
                "Target's updates of one id override each other, and batches may be applied in any order"
            )

    def release(self) -> None:
        # On an unexpected error the open batch is left unfinished and never handed to on_batch.
        if self.batch is not None:
            self.batch.file.close()
        self.duplicates.close()
        self.rejects_file.close()
