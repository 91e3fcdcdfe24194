"""Client profiles: how one Target client code's drops are read and sent.

A profile is a small JSON document (schema: ``client_profile.schema.json`` beside this module)
that maps a CRM export to Target's format once, so the export can be dropped as it is:

- ``id_column``: which source column holds the visitor id and whether it is a ``pcId`` or a
  ``thirdPartyId``; it becomes the first column.
- ``rename`` (source column -> attribute), ``drop`` (columns never sent), ``constants`` (attributes
  added to every row). Columns neither renamed nor dropped keep their name.
- ``separator`` (``,`` ``;`` tab ``|``) and ``encoding`` (UTF-8 with or without BOM, UTF-16 with a
  BOM, Windows-1252, ISO-8859-1): ``ProfileReader`` transcodes and re-delimits the drop into
  Target's format (UTF-8, comma) while it streams into the validation engine.
- ``input_mode``, ``api_version``, ``delta``: the drop's defaults; a key's ``api=`` / ``mode=`` /
  ``delta=`` folder still wins.
- ``token_secret_id``, ``target_base_url``, ``daily_row_quota``, ``calls_per_minute``, ``account``:
  how this client reaches Target. Clients naming the same ``account`` share its daily rows and
  calls per minute (the quota and rate-limit key is the account, not the client code).

Every field is optional; a client without a profile gets the stack's settings, exactly as before.

Validation: the schema is checked with Powertools' validation utility (fastjsonschema, pure
Python); then the mapped header and one synthetic row go through the engine itself
(``validate_and_split``), so a profile that would produce a header Target refuses is refused when
it is saved, by the same rules and with the same message as a dropped file would get. Nothing
here copies the engine's header rules.

Transcoding never loses a byte silently: a byte that is not valid in the declared encoding
rejects its row (reason ``invalid_utf8`` for a UTF-8 profile, as today's rule;
``invalid_text_encoding`` for the others) with its line number. Line numbers stay those of the
source file: a record the reader rejects reaches the engine as blank lines, which the engine counts
but never treats as rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import operator
import re
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from profile_sync.adobe_target.ratelimit import RateLimiter
from profile_sync.ports import DailyRowQuota
from profile_sync.quota import QuotaDecision
from profile_sync.settings import Settings
from profile_sync.validate import (
    REJECTS_HEADER,
    BatchInfo,
    FileRejected,
    ValidationResult,
    cut_original,
    spreadsheet_safe,
    unlisted_warning,
    validate_and_split,
)
from profile_sync.validate.engine import ByteStream

if TYPE_CHECKING:
    from _csv import Reader as CsvReader
    from collections.abc import Buffer

SCHEMA_PATH = Path(__file__).with_name("client_profile.schema.json")
SEPARATORS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "|": "|"}
# Profile encoding -> Python codec. UTF-8's codec drops a leading BOM; UTF-16's needs one (read below).
ENCODINGS = {"utf-8": "utf-8-sig", "utf-16": "utf-16", "windows-1252": "cp1252", "iso-8859-1": "latin-1"}
# Fields a profile can set on the stack's Settings.
SETTINGS_FIELDS = (
    "input_mode",
    "api_version",
    "delta",
    "token_secret_id",
    "target_base_url",
    "daily_row_quota",
    "calls_per_minute",
)
INVALID_UTF8 = "invalid_utf8"
INVALID_TEXT_ENCODING = "invalid_text_encoding"
INVALID_QUOTING = "invalid_quoting"
TOO_MANY_FIELDS = "too_many_fields"
# An SSM Standard parameter holds 4 KB.
MAX_PROFILE_BYTES = 4096

_READ_SIZE = 1 << 20
_BLOCK_ROWS = 4096  # rows transcoded per output block
# Undecodable bytes become lone low surrogates U+DC00 + byte: no decoder ever yields one from
# valid input, so they mark exactly the bad bytes (Python's "surrogateescape" refuses bytes < 0x80,
# which a broken UTF-16 pair can hold).
_MARK_ERRORS = "profile_sync_mark"
_MARKED = re.compile("[\udc00-\udcff]")


def _mark(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):  # registered for decoding only
        raise error
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + b) for b in bad), error.end


codecs.register_error(_MARK_ERRORS, _mark)


class ProfileInvalid(ValueError):
    """The profile document is refused; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ClientProfile:
    client_code: str
    document: dict[str, Any] = field(default_factory=dict, compare=False)
    version: int | None = None  # SSM's parameter version, None for a local file

    @property
    def id_source(self) -> str | None:
        return (self.document.get("id_column") or {}).get("source")

    @property
    def id_type(self) -> str:
        kind: str = (self.document.get("id_column") or {}).get("type", "pcId")
        return kind

    @property
    def rename(self) -> dict[str, str]:
        return dict(self.document.get("rename") or {})

    @property
    def drop(self) -> frozenset[str]:
        return frozenset(self.document.get("drop") or ())

    @property
    def constants(self) -> dict[str, str]:
        return dict(self.document.get("constants") or {})

    @property
    def separator(self) -> str:
        return SEPARATORS[self.document.get("separator", ",")]

    @property
    def encoding(self) -> str:
        encoding: str = self.document.get("encoding", "utf-8")
        return encoding

    @property
    def account(self) -> str:
        """The budget key: daily rows and calls per minute are counted per account."""
        account: str = self.document.get("account") or self.client_code
        return account

    @property
    def maps_columns(self) -> bool:
        """True when the drop is not already in Target's format and must go through ProfileReader."""
        d = self.document
        return bool(d.get("id_column") or d.get("rename") or d.get("drop") or d.get("constants")) or (
            self.separator,
            self.encoding,
        ) != (",", "utf-8")

    def settings(self, base: Settings) -> Settings:
        """The stack's settings with what this profile sets."""
        return base.with_overrides(**{name: self.document.get(name) for name in SETTINGS_FIELDS})

    def label(self) -> str:
        return f"{self.client_code} v{self.version}" if self.version is not None else self.client_code


class ProfileStore(Protocol):
    def get(self, client_code: str) -> ClientProfile | None:
        """The client's profile, or None when it has none (the stack's defaults apply)."""


class StaticProfiles:
    """Profiles held in memory (the local CLI's --client-profile, tests)."""

    def __init__(self, profiles: dict[str, ClientProfile] | None = None) -> None:
        self.profiles = dict(profiles or {})

    def get(self, client_code: str) -> ClientProfile | None:
        return self.profiles.get(client_code)


# ------------------------------------------------------------------------------------- validation
@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def parse_profile(
    text: str | bytes | dict[str, Any],
    client_code: str,
    *,
    version: int | None = None,
    settings: Settings | None = None,
) -> ClientProfile:
    """Check a profile document (schema, then the engine's header rules after mapping).

    Raises ProfileInvalid with every problem found, each saying what to change.
    """
    from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate  # noqa: PLC0415

    if isinstance(text, dict):
        document = text
    else:
        if isinstance(text, bytes) and len(text) > MAX_PROFILE_BYTES:
            raise ProfileInvalid([f"the profile is {len(text)} bytes; at most {MAX_PROFILE_BYTES} fit"])
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ProfileInvalid([f"not valid JSON: {exc}"]) from None
    try:
        validate(event=document, schema=_schema())
    except SchemaValidationError as exc:
        message = str(exc.validation_message).replace("data.", "", 1).replace("data ", "the profile ", 1)
        raise ProfileInvalid([message.replace("\t", "\\t")]) from None
    profile = ClientProfile(client_code, document, version)
    problems = []
    rename = profile.rename
    if profile.id_source and profile.id_source in rename:
        problems.append(f"rename: '{profile.id_source}' is the id column; its name comes from id_column.type")
    if profile.id_source and profile.id_source in profile.drop:
        problems.append(f"drop: '{profile.id_source}' is the id column and cannot be dropped")
    for source in sorted(profile.drop & rename.keys()):
        problems.append(f"'{source}' is both renamed and dropped; keep one")
    problems += _engine_problems(profile, settings or Settings())
    if problems:
        raise ProfileInvalid(problems)
    return profile


def _engine_problems(profile: ClientProfile, settings: Settings) -> list[str]:
    """The engine's own verdict on the header the profile writes, and on one row of its constants."""
    settings = profile.settings(settings)
    names = [profile.id_type, *profile.rename.values(), *profile.constants]
    values = ["profile-check", *("x" for _ in profile.rename.values()), *profile.constants.values()]
    if len(names) == 1:  # the file's own columns come later; the id alone is not this profile's fault
        names, values = [*names, "attribute"], [*values, "x"]
    body = io.StringIO()
    writer = csv.writer(body, lineterminator="\n")
    writer.writerow(names)
    writer.writerow(values)
    with tempfile.TemporaryDirectory() as out:
        result = validate_and_split(
            io.BytesIO(body.getvalue().encode()), Path(out), settings, source_name="mapped header"
        )
        if result.file_error:
            return [result.file_error.replace("mapped header: line 1: header: ", "the mapped header: ")]
        if result.rejected:
            with open(Path(out) / "rejects.csv", encoding="utf-8") as rejects:
                row = next(iter(list(csv.DictReader(rejects))))
            return [f"constants: a row with them would be rejected: {row['reason']}: {row['detail']}"]
    return []


# ------------------------------------------------------------------------------------- reading
class _Head(io.RawIOBase):
    """A raw stream with bytes already read put back in front of it."""

    def __init__(self, head: bytes, stream: ByteStream) -> None:
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


class ReaderRejects:
    """Rows the reader refused before the engine saw them (the engine got blank lines instead).

    Counted by reason; listed, as the engine lists its own (at most ``keep`` rows, each line cut at
    ``original_max`` bytes), in a temporary file, so a file of bad rows never fills memory.
    """

    def __init__(self, keep: int = 0, original_max: int = 0) -> None:
        self.keep, self.original_max = keep, original_max
        self.count = 0
        self.reasons: dict[str, int] = {}
        self.warnings: list[str] = []
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._spool)
        self._listed = 0

    def add(self, line: int, reason: str, detail: str, original: str) -> None:
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if self.keep and self._listed >= self.keep:
            return
        self._listed += 1
        data = original.encode("utf-8", errors="replace")
        kept = cut_original(data, len(data), self.original_max or len(data))
        self._writer.writerow([line, reason, spreadsheet_safe(detail), spreadsheet_safe(kept)])

    def listed(self) -> Iterator[list[str]]:
        """The listed rows, as rejects.csv rows, in the order they came."""
        self._spool.seek(0)
        yield from csv.reader(self._spool)

    def close(self) -> None:
        self._spool.close()


class ProfileReader(io.RawIOBase):
    """A binary stream of the drop as Target's format (UTF-8, comma-separated, mapped columns).

    Streaming, memory bounded by constants (one read chunk and one block of rows). UTF-8 comma
    files whose only mapping is renames are passed through untouched after the header (the engine
    does every row check itself); every other profile goes through the csv module.
    """

    def __init__(
        self,
        stream: ByteStream,
        profile: ClientProfile,
        *,
        source_name: str = "<stream>",
        settings: Settings | None = None,
    ) -> None:
        self.profile = profile
        self.source = source_name
        settings = settings or Settings()
        self.rejects = ReaderRejects(settings.rejects_max_rows, settings.rejects_original_max_bytes)
        self._out = memoryview(b"")
        self._gen = self._generate(stream)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at the end); slices of the produced chunks, one copy."""
        if size is None or size < 0:
            return b"".join([self._out, *self._gen])
        parts: list[memoryview] = []
        wanted = size
        while wanted > 0:
            if not self._out:
                chunk = next(self._gen, None)
                if chunk is None:
                    break
                self._out = memoryview(chunk)
            part, self._out = self._out[:wanted], self._out[wanted:]
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts)

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    # ---- the work ------------------------------------------------------------------------------
    def _text(self, stream: ByteStream) -> io.TextIOWrapper:
        encoding = self.profile.encoding
        head = stream.read(4)
        if encoding == "utf-16" and head[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise FileRejected(
                f"{self.source}: the profile says UTF-16, but the file does not start with a UTF-16 "
                "byte-order mark; save it as Excel's 'Unicode Text' or change the profile's encoding"
            )
        raw = io.BufferedReader(_Head(head, stream), buffer_size=_READ_SIZE)
        # newline="\n": lines end at LF only (CRLF keeps its CR for csv), as the engine counts lines.
        return io.TextIOWrapper(raw, encoding=ENCODINGS[encoding], errors=_MARK_ERRORS, newline="\n")

    def _generate(self, stream: ByteStream) -> Iterator[bytes]:
        p = self.profile
        if (p.encoding, p.separator) == ("utf-8", ",") and not p.constants and not p.drop:
            head = b""
            while (nl := head.find(b"\n")) < 0 or not head[: nl + 1].strip(b"\r\n"):
                if nl >= 0 and len(head) > _READ_SIZE:
                    break
                chunk = stream.read(_READ_SIZE)
                if not chunk:
                    break
                head += chunk
            passed = self._pass_through(head)
            if passed is not None:
                yield passed
                while chunk := stream.read(_READ_SIZE):
                    yield chunk
                return
            stream = _Head(head, stream)
        yield from self._transcode(stream)

    def _pass_through(self, head: bytes) -> bytes | None:
        """Renames only and the id already first: a new header line, then the file's own bytes."""
        body = head.removeprefix(b"\xef\xbb\xbf")
        blank = len(body) - len(body.lstrip(b"\r\n"))
        nl = body.find(b"\n", blank)
        if nl < 0:
            return None
        try:
            line = body[blank:nl].decode().rstrip("\r")
        except UnicodeDecodeError:
            return None
        if '"' in line:
            return None
        header = [name.strip(" ") for name in line.split(",")]
        order, names = self._mapping(header, body.count(b"\n", 0, blank) + 1)
        if order != list(range(len(header))):
            self.rejects.warnings.clear()  # _transcode maps the header again
            return None
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(names)
        return body[:blank] + out.getvalue().encode() + body[nl + 1 :]

    def _transcode(self, stream: ByteStream) -> Iterator[bytes]:
        profile = self.profile
        text = self._text(stream)
        # The csv reader takes its lines from a queue that _rows can bypass: a block of lines
        # with nothing to quote is re-delimited in one str.replace.
        self._pending: deque[str] = deque()
        self._chunks = _line_chunks(text)
        self._back: str | None = None  # the rest of a chunk, after lines the csv reader took
        reader = csv.reader(self._feed(), delimiter=profile.separator, strict=True)
        line = 0  # last source line consumed
        header: list[str] | None = None
        while header is None:
            try:
                row = next(reader)
            except StopIteration:
                return  # empty: the engine says so
            except csv.Error as exc:
                raise FileRejected(f"{self.source}: line {reader.line_num}: header: {exc}") from None
            if not row:
                yield b"\n" * (reader.line_num - line)
                line = reader.line_num
                continue
            marked = _MARKED.search("".join(row))
            if marked:
                raise FileRejected(
                    f"{self.source}: line {reader.line_num}: header: not valid {profile.encoding} "
                    f"(byte 0x{ord(marked[0]) - 0xDC00:02X}); check the profile's encoding"
                )
            header = [name.strip(" ") for name in row]
            order, out_names = self._mapping(header, reader.line_num)
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerow(out_names)
            yield out.getvalue().encode()
            line = reader.line_num
        yield from self._rows(reader, order, len(header), line)

    def _next_chunk(self) -> str | None:
        chunk, self._back = self._back, None
        return chunk if chunk is not None else next(self._chunks, None)

    def _feed(self) -> Iterator[str]:
        pending = self._pending
        while True:
            while pending:
                yield pending.popleft()
            chunk = self._next_chunk()
            if chunk is None:
                return
            pending.extend(_lines(chunk))

    def _mapping(self, header: list[str], line: int) -> tuple[list[int], list[str]]:
        profile = self.profile
        where = f"{self.source}: line {line}: header"
        positions: dict[str, int] = {}
        for i, name in enumerate(header):
            positions.setdefault(name, i)
        id_index = 0
        if profile.id_source is not None:
            if profile.id_source not in positions:
                close = [n for n in header if n.lower() == profile.id_source.lower()]
                hint = f" (the file has '{close[0]}': names are case-sensitive)" if close else ""
                raise FileRejected(
                    f"{where}: the profile's id column '{profile.id_source}' is not in the file's header"
                    f"{hint}; check the profile's id_column.source and separator"
                )
            id_index = positions[profile.id_source]
        rename, drop = profile.rename, profile.drop
        missing = sorted((rename.keys() | drop) - positions.keys())
        if missing:
            self.rejects.warnings.append(
                f"{where}: the profile names columns the file does not have: {', '.join(missing)}"
            )
        order = [id_index]
        names = [profile.id_type if profile.id_source is not None else rename.get(header[0], header[0])]
        for i, name in enumerate(header):
            if i == id_index or name in drop:
                continue
            order.append(i)
            names.append(rename.get(name, name))
        return order, [*names, *profile.constants]

    def _rows(self, reader: CsvReader, order: list[int], width: int, line: int) -> Iterator[bytes]:
        profile = self.profile
        pick = operator.itemgetter(*order)
        constants = tuple(profile.constants.values())
        pad = [""] * width
        blank = ("",) * len(constants)
        gone = [i for i in range(width) if i not in order]
        dropped = (
            (lambda row: [row[gone[0]]]) if len(gone) == 1 else operator.itemgetter(*gone) if gone else None
        )
        reason = INVALID_UTF8 if profile.encoding == "utf-8" else INVALID_TEXT_ENCODING
        out = io.StringIO()
        write = csv.writer(out, lineterminator="\n").writerow
        # The common case, a one-line row of the header's width that keeps every column in place
        # and adds nothing, is written as it was read.
        plain = order == list(range(width)) and not constants
        separator, pending, fast = profile.separator, self._pending, 0
        fast_ok = _FAST_REDELIMIT and separator != ","
        rows = 0
        first = line + 1  # source line of the block's first output line
        while True:
            try:
                if plain and not pending:
                    # Between records with nothing queued: lines with nothing to quote need no csv.
                    chunk = self._next_chunk()
                    if chunk is None:
                        break
                    if not fast_ok:
                        pending.extend(_lines(chunk))
                        special = None
                    else:
                        special = _SPECIAL.search(chunk)
                    start = len(chunk) if special is None else chunk.rfind("\n", 0, special.start()) + 1
                    if start and fast_ok:
                        if out.tell():
                            yield self._block(out.getvalue(), reason, first)
                            out.seek(0)
                            out.truncate()
                            rows = 0
                        yield chunk[:start].replace(separator, ",").encode()
                        count = chunk.count("\n", 0, start)
                        line, fast, first = line + count, fast + count, line + count + 1
                    if special is None and fast_ok:
                        continue
                    if special is not None:
                        # The csv reader takes the line with the special character and the next
                        # 64 KB (a quoted field may go on; specials often come in runs); the rest
                        # of the chunk comes back here.
                        end = chunk.find("\n", special.start() + _CSV_WINDOW) + 1 or len(chunk)
                        pending.extend(_lines(chunk[start:end]))
                        self._back = chunk[end:] or None
                for row in reader:
                    end = reader.line_num + fast
                    if plain and end - line == 1 and len(row) == width:
                        write(row)
                    elif not row:
                        out.write("\n" * (end - line))
                    elif len(row) > width:
                        detail = f"{len(row)} fields, the header has {width} columns"
                        original = _MARKED.sub("\ufffd", profile.separator.join(row))
                        self._reject(line + 1, TOO_MANY_FIELDS, detail, original)
                        out.write("\n" * (end - line))
                    else:
                        if len(row) < width:
                            row.extend(pad[len(row) :])
                        values = (pick(row),) if len(order) == 1 else pick(row)
                        marked = dropped and _MARKED.search("\x1f".join(dropped(row)))
                        if marked:
                            # A bad byte in a column that is not sent still says the row was damaged.
                            detail = self._bad_byte(marked, " in a dropped column")
                            original = _MARKED.sub("\ufffd", profile.separator.join(row))
                            self._reject(line + 1, reason, detail, original)
                            out.write("\n" * (end - line))
                        elif constants and not any(values[1:]):
                            write((*values, *blank))  # constants alone are not news: the engine skips it
                        else:
                            write((*values, *constants))
                        if end - line > 1 and not marked:
                            # A record over several lines whose line breaks were in dropped columns:
                            # blank lines after it keep the next rows' line numbers the source's.
                            kept = sum(v.count("\n") for v in (*values, *constants))
                            out.write("\n" * (end - line - 1 - kept))
                    line = end
                    rows += 1
                    if rows >= _BLOCK_ROWS:
                        yield self._block(out.getvalue(), reason, first)
                        out.seek(0)
                        out.truncate()
                        rows, first = 0, line + 1
                    if plain and not pending:
                        break  # back to the chunks
                else:
                    break  # the csv reader has read the last line
            except csv.Error as exc:
                # strict csv: a quote never closed or text after a closing quote. The csv reader
                # resumes at the next line, as the engine does.
                end = reader.line_num + fast
                self._reject(line + 1, INVALID_QUOTING, str(exc), "")
                out.write("\n" * (end - line))
                line = end
        yield self._block(out.getvalue(), reason, first)

    def _block(self, block: str, reason: str, first: int) -> bytes:
        if _MARKED.search(block) is None:
            return block.encode()
        # Rare: replace each record holding a marked byte with blank lines, and reject it.
        lines = block.split("\n")
        kept: list[str] = []
        reader = csv.reader(lines[:-1])
        offset = 0
        for record in reader:
            end = reader.line_num
            text = "\n".join(lines[offset:end]) + "\n"
            marked = _MARKED.search(text)
            if marked:
                detail = self._bad_byte(marked)
                original = _MARKED.sub("\ufffd", self.profile.separator.join(record))
                self._reject(first + offset, reason, detail, original)
                text = "\n" * (end - offset)
            kept.append(text)
            offset = end
        kept.append("\n" * (len(lines) - 1 - offset))  # blank lines at the end of the block
        return "".join(kept).encode()

    def _bad_byte(self, marked: re.Match[str], where: str = "") -> str:
        byte = ord(marked[0]) - 0xDC00
        encoding = self.profile.encoding
        return (
            f"byte 0x{byte:02X}{where} is not valid {encoding} (check the profile's encoding, or fix the row)"
        )

    def _reject(self, line: int, reason: str, detail: str, original: str) -> None:
        self.rejects.add(line, reason, detail, original)


def _line_chunks(text: io.TextIOWrapper) -> Iterator[str]:
    """The decoded text in pieces of whole lines (the last one may lack its newline)."""
    carry = ""
    while data := text.read(_READ_SIZE):
        data = carry + data
        cut = data.rfind("\n") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut]
    if carry:
        yield carry


def _lines(chunk: str) -> list[str]:
    parts = chunk.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


# What re-delimiting with a plain replace would get wrong: a quote, a comma (Target's separator),
# a bad byte's mark, a CR that does not end a line. Tests turn the shortcut off to compare.
_SPECIAL = re.compile('[",\udc00-\udcff]|\r(?!\n)')
_CSV_WINDOW = 64 * 1024
_FAST_REDELIMIT = True


def validate_with_profile(
    stream: ByteStream,
    out_dir: Path,
    settings: Settings,
    profile: ClientProfile | None,
    *,
    source_name: str = "<stream>",
    on_batch: Callable[[BatchInfo], None] | None = None,
) -> ValidationResult:
    """``validate_and_split`` of the drop as its profile maps it (unchanged without a profile)."""
    if profile is None or not profile.maps_columns:
        return validate_and_split(stream, out_dir, settings, source_name=source_name, on_batch=on_batch)
    reader = ProfileReader(stream, profile, source_name=source_name, settings=settings)
    try:
        result = validate_and_split(
            reader, Path(out_dir), settings, source_name=source_name, on_batch=on_batch
        )
        result.warnings[:0] = reader.rejects.warnings
        if not result.file_error and reader.rejects.count:
            _add_reader_rejects(result, reader.rejects, Path(out_dir), settings, source_name)
    finally:
        reader.rejects.close()
    return result


def _add_reader_rejects(
    result: ValidationResult, rejects: ReaderRejects, out_dir: Path, settings: Settings, source_name: str
) -> None:
    """The engine saw blank lines in their place: add them to its account and its rejects file,
    within the engine's bounds (REJECTS_MAX_ROWS listed in all)."""
    before = unlisted_warning(source_name, settings, result.rejected_unlisted)
    listed = result.rejected - result.rejected_unlisted
    room = settings.rejects_max_rows - listed if settings.rejects_max_rows else rejects.count
    written = 0
    with open(out_dir / "rejects.csv", "a", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        for row in rejects.listed():
            if written >= room:
                break
            writer.writerow(row)
            written += 1
    for reason, count in rejects.reasons.items():
        result.reasons[reason] = result.reasons.get(reason, 0) + count
    result.rejected_unlisted += rejects.count - written
    if result.rejected_unlisted:
        result.warnings = [w for w in result.warnings if w != before]
        result.warnings.append(unlisted_warning(source_name, settings, result.rejected_unlisted))
    result.received += rejects.count
    result.rejected += rejects.count


assert REJECTS_HEADER == ("line", "reason", "detail", "original")  # the columns written above


# ------------------------------------------------------------------------------------- budgets
class AccountLimiter:
    """A rate limiter that counts every call of a client against its profile's account."""

    def __init__(self, inner: RateLimiter, account: str) -> None:
        self.inner, self.account = inner, account

    def try_acquire(self, key: str, *, share: float = 1.0) -> float:
        return self.inner.try_acquire(self.account, share=share)

    def acquire(self, key: str, *, max_wait: float, share: float = 1.0) -> None:
        self.inner.acquire(self.account, max_wait=max_wait, share=share)


class AccountQuota:
    """A quota (daily rows or rolling single updates) counted per account with the profile's limit.

    A client without a profile is counted under its client code with the stack's limit, as before.
    ``make(limit)`` builds the underlying quota for a limit.
    """

    per_client = True  # the limit can be on for a client while the stack's is off

    def __init__(
        self,
        profiles: ProfileStore,
        default: DailyRowQuota,
        make: Callable[[int], DailyRowQuota],
        field: str,
    ) -> None:
        self.profiles, self.default, self.make, self.field = profiles, default, make, field
        self._by_limit: dict[int, DailyRowQuota] = {}

    def reserve(self, client_code: str, reservation_id: str, amount: int, now: float) -> QuotaDecision:
        profile = self.profiles.get(client_code)
        if profile is None:
            return self.default.reserve(client_code, reservation_id, amount, now)
        limit = profile.document.get(self.field)
        quota = self.default if limit is None else self._quota(limit)
        return quota.reserve(profile.account, reservation_id, amount, now)

    def _quota(self, limit: int) -> DailyRowQuota:
        if limit not in self._by_limit:
            self._by_limit[limit] = self.make(limit)
        return self._by_limit[limit]
