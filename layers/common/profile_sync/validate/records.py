"""The record parser and the per-row rules: the reference for every rejection reason.

``parse_record`` splits one RFC 4180 record; ``RowChecker.check`` decides what one data row becomes
(written bytes, skipped, or a rejection with its reason and detail). The fast path must agree with
this module on every line it takes.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import quote, unquote_to_bytes

from profile_sync.settings import Settings

# Raw mode: no control character in an id; in a value only tab, LF and CR (a quoted value's layout).
ID_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
VALUE_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BAD_ENCODED = re.compile(rb'%(?![0-9A-Fa-f]{2})|[^\x21-\x7e]|"')
# Encoded mode: characters Target's form decoding would take as syntax, written percent-encoded.
_FORM_SYNTAX = re.compile(rb"[&#?=]")
PERCENT = [b"%%%02X" % i for i in range(256)]
_PLUS_DETAIL = "raw '+' is a space to Target but a plus sign in plain text: write %20 or %2B"


class Rejection(NamedTuple):
    reason: str
    detail: str


def encoding_problem(value: bytes) -> str | None:
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


def escape_form_syntax(value: bytes) -> bytes:
    """Percent-encode & # ? = : in an encoded value they can only stand for themselves."""
    return _FORM_SYNTAX.sub(lambda m: PERCENT[m[0][0]], value) if _FORM_SYNTAX.search(value) else value


def parse_record(buf: bytes, pos: int) -> tuple[list[bytes], list[bool], int, str | None] | None:
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


class RowChecker:
    """The rules for one data row, in the order the module docstring lists them."""

    def __init__(self, settings: Settings, names: list[str], prefix_len: int) -> None:
        self.settings = settings
        self.names = names
        self.raw = settings.input_mode == "raw"
        self.prefix_len = prefix_len  # bytes of the batch file's header line

    def check(
        self, fields: list[bytes], quoted: list[bool] | None, record: bytes
    ) -> Rejection | tuple[bytes, bytes] | None:
        """(written row with its newline, written id), None when skipped, or the rejection."""
        settings, names = self.settings, self.names
        try:
            record.decode()
        except UnicodeDecodeError as exc:
            return Rejection("invalid_utf8", f"byte {exc.start + 1} of the row is not valid UTF-8")
        if len(fields) > len(names):
            return Rejection("too_many_fields", f"{len(fields)} fields, the header has {len(names)} columns")
        values = [f.strip(b" ") for f in fields]
        if not values[0]:
            return Rejection("empty_id", f"field 1 ({names[0]}) is empty")
        out: list[bytes] = []
        decoded: list[bytes] = []
        for i, value in enumerate(values):
            if not value:
                out.append(value)
                decoded.append(value)
                continue
            if self.raw:
                control = (VALUE_CONTROL if i else ID_CONTROL).search(value)
                if control is not None:
                    detail = f"field {i + 1} ({names[i]}): control character 0x{control[0][0]:02X}"
                    return Rejection("control_character", detail)
                out.append(quote(value.decode(), safe="").encode())
                decoded.append(value)
                continue
            written = value.replace(b",", b"%2C").replace(b'"', b"%22") if quoted and quoted[i] else value
            problem = encoding_problem(written)
            if problem:
                return Rejection("invalid_encoding", f"field {i + 1} ({names[i]}): {problem}")
            if b"+" in written and not (i == 0 and names[0] == "thirdPartyId"):
                return Rejection("ambiguous_plus", f"field {i + 1} ({names[i]}): {_PLUS_DETAIL}")
            written = escape_form_syntax(written)
            out.append(written)
            decoded.append(unquote_to_bytes(written) if b"%" in written else written)
            if i == 0 and (rejection := self._id_problem(decoded[0])):
                return rejection
        if self.raw and (rejection := self._id_problem(decoded[0])):
            return rejection
        if not any(values[1:]):
            return None
        size = sum(len(v) for v in decoded[1:])
        if size > settings.row_max_bytes:
            detail = f"values are {size} bytes decoded, over the {settings.row_max_bytes}-byte profile limit"
            return Rejection("row_too_large", detail)
        row = b",".join(out) + b"\n"
        if self.prefix_len + len(row) >= settings.batch_max_bytes:
            detail = (
                f"the row ({len(row)} bytes) and the header cannot fit in a batch "
                f"under {settings.batch_max_bytes} bytes"
            )
            return Rejection("row_too_large", detail)
        return row, out[0]

    def _id_problem(self, ident: bytes) -> Rejection | None:
        text = ident.decode()  # the caller checked the UTF-8
        if len(text) > self.settings.id_max_chars:
            detail = f"field 1 ({self.names[0]}) is {len(text)} characters, over {self.settings.id_max_chars}"
            return Rejection("id_too_long", detail)
        if self.names[0] == "thirdPartyId" and ("+" in text or "/" in text):
            return Rejection("invalid_third_party_id", "a thirdPartyId may not contain '+' or '/'")
        return None
