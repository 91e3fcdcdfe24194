"""The fast path: runs of lines the per-row rules would accept unchanged (encoded mode) or only
percent-encode (raw mode), found by one compiled regex over a whole chunk and copied in bulk.

Conservative: a line it does not match takes the per-record path, which decides every rejection.
"""

from __future__ import annotations

import re

from profile_sync.settings import Settings
from profile_sync.validate import tuning
from profile_sync.validate.records import PERCENT

# Percent-escaped multi-byte UTF-8 sequence, minus its leading '%' (RFC 3629 table).
_CONT = rb"%[89AaBb][0-9A-Fa-f]"
_UTF8_PCT = (
    rb"(?:[Cc][2-9A-Fa-f]@|[Dd][0-9A-Fa-f]@"
    rb"|[Ee]0%[AaBb][0-9A-Fa-f]@|[Ee][1-9A-Ca-cEeFf]@@|[Ee][Dd]%[89][0-9A-Fa-f]@"
    rb"|[Ff]0%[9AaBb][0-9A-Fa-f]@@|[Ff][1-3]@@@|[Ff]4%8[0-9A-Fa-f]@@)"
).replace(b"@", _CONT)
_ID_AFTER_NEWLINE = re.compile(rb"\n([^,\n]*)")
_RAW_NEEDS_ESCAPE = re.compile(rb"[^A-Za-z0-9_.~\-,\n]+")


def good_line_pattern(
    mode: str, third_party: bool, columns: int, max_len: int, id_max: int
) -> re.Pattern[bytes]:
    """A run of lines that the per-row path would accept unchanged (encoded) or only escape (raw)."""
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


class FastPath:
    @classmethod
    def build(cls, settings: Settings, names: list[str], prefix_len: int) -> FastPath | None:
        """The fast path for this header, or None when no line can be short enough for it."""
        raw = settings.input_mode == "raw"
        # Longest line it may accept: fits in a batch with the header and (once decoded) under
        # the profile limit; raw mode may triple in size when escaped.
        fit = settings.batch_max_bytes - prefix_len - 2
        max_len = min(settings.row_max_bytes, fit // 3 if raw else fit)
        if not tuning.FAST_PATH or max_len < 1:
            return None
        third_party = names[0] == "thirdPartyId"
        mode = settings.input_mode
        return cls(raw, good_line_pattern(mode, third_party, len(names), max_len, settings.id_max_chars))

    def __init__(self, raw: bool, good: re.Pattern[bytes]) -> None:
        self.raw = raw
        self.good = good

    def match(self, work: bytes, pos: int) -> int:
        """End of the run of good lines at ``pos`` (``pos`` when there is none)."""
        end = self.good.match(work, pos).end()  # type: ignore[union-attr]  # *+ always matches
        if end > pos and self.raw:
            end = _utf8_prefix(work, pos, end)
        return end

    def rows(self, work: bytes, pos: int, end: int) -> tuple[bytes, int, int, list[bytes]]:
        """The run work[pos:end] as written: (buffer, start, end, the written id of each row)."""
        if self.raw:
            buf = _RAW_NEEDS_ESCAPE.sub(lambda m: b"".join(map(PERCENT.__getitem__, m[0])), work[pos:end])
            pos, end = 0, len(buf)
        else:
            buf = work
        ids = [buf[pos : buf.index(b",", pos)]]  # one id per line
        ids += _ID_AFTER_NEWLINE.findall(buf, pos, end - 1)
        return buf, pos, end, ids


def _utf8_prefix(work: bytes, pos: int, end: int) -> int:
    """End of the leading lines of work[pos:end] that are valid UTF-8."""
    try:
        work[pos:end].decode()
    except UnicodeDecodeError as exc:
        return work.rfind(b"\n", pos, pos + exc.start) + 1 or pos
    return end
