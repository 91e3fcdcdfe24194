"""Validate a visitor-attribute CSV and split its accepted rows into Bulk Profile Update batch files.

Python with numpy for the encoded-mode fast path and the duplicate counter (imported when a file is
validated, not with this package). The input is read once, in large chunks, and never held whole in
memory.

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
earlier accepted row. Counted exactly (up to 64-bit hash collisions) by ``duplicates.DuplicateCounter``:
each id gets a 64-bit hash (seeded per run, the same whether the fast path hashes a chunk's ids at
once or the per-row path one id), goes to one of 16 partitions by its top bits and is spilled to
that partition's temporary file; at the end each partition is sorted and counted, and one too large
for memory is split again by its next bits. Memory is bounded by constants, whatever the file size:
the hashes buffered before a spill (``tuning.DUP_BUFFER``, 2 MB, plus those of one read chunk, and
about three times that while they are grouped), and at the end one block of at most
``tuning.DUP_SET_MAX`` hashes (8 MB; a level of splitting is only needed past 2**24 accepted rows,
16 x ``tuning.DUP_SET_MAX``, and again past 2**28). Disk: 8 bytes per accepted row, at most twice
that while a partition is split.

Speed: in encoded mode each chunk is classified with numpy: one pass marks every byte that is not
plain (newlines, commas, '%', bytes no clean line holds), and whole-array steps check each line's
length, field count, id and escapes (hex digits, and the escaped bytes of the whole chunk decoded
as UTF-8 at once). Runs of clean lines are copied to the batch file in bulk; in raw mode one
compiled regex finds them. Only lines the fast path does not take (quotes, spaces, bad rows, ...)
take the per-row path, which is the reference for every rule. The next chunk is read in a thread
while this one is parsed (``engine.read_ahead``): gzip decompression and S3 reads release the GIL,
so they overlap.

Modules, in the order data flows through them: ``engine`` (reads chunks, routes records, counts),
``fast_path`` (runs of clean lines), ``records`` (the record parser and the per-row rules: the
reference), ``header``, ``batches`` (the batch writer), ``rejects`` (rejects.csv), ``duplicates``
(the duplicate counter), ``results`` (what is reported), ``tuning`` (chunk and buffer sizes).
"""

from profile_sync.validate.engine import validate_and_split
from profile_sync.validate.results import (
    EXPERIENCE_CLOUD_IDS,
    ID_COLUMNS,
    REASONS,
    REJECTS_HEADER,
    BatchInfo,
    FileRejected,
    ValidationResult,
    cut_original,
    spreadsheet_safe,
    spreadsheet_unsafe,
    unlisted_warning,
)

__all__ = [
    "EXPERIENCE_CLOUD_IDS",
    "ID_COLUMNS",
    "REASONS",
    "REJECTS_HEADER",
    "BatchInfo",
    "FileRejected",
    "ValidationResult",
    "cut_original",
    "spreadsheet_safe",
    "spreadsheet_unsafe",
    "unlisted_warning",
    "validate_and_split",
]
