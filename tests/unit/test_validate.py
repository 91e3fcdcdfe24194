"""Tests for the validate-and-split engine (profile_sync.validate)."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from profile_sync.settings import Settings
from profile_sync.validate import BatchInfo, ValidationResult, duplicates, tuning, validate_and_split


class Run:
    """One engine run: the result, the batch files' bytes and the parsed rejects.csv."""

    def __init__(self, result: ValidationResult, batches: list[bytes], rejects: list[list[str]]) -> None:
        self.result = result
        self.batches = batches
        self.rejects = rejects

    @property
    def reasons(self) -> list[tuple[int, str]]:
        return [(int(r[0]), r[1]) for r in self.rejects]


@pytest.fixture(autouse=True)
def small_duplicate_counter(monkeypatch):
    # Tiny sizes: every run spills its hashes, and a partition of more than 8 hashes is split again.
    monkeypatch.setattr(tuning, "DUP_PARTITION_BITS", 2)
    monkeypatch.setattr(tuning, "DUP_BUFFER", 16)
    monkeypatch.setattr(tuning, "DUP_SET_MAX", 8)


@pytest.fixture
def run(tmp_path: Path):
    counter = iter(range(10**6))

    def _run(data: bytes, **settings: object) -> Run:
        out = tmp_path / f"out{next(counter)}"
        result = validate_and_split(io.BytesIO(data), out, Settings(**settings), source_name="f.csv")
        batches = [Path(b.path).read_bytes() for b in result.batches]
        with (out / "rejects.csv").open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["line", "reason", "detail", "original"]
        r = result
        assert r.received == r.accepted + r.rejected + r.skipped
        assert sum(r.reasons.values()) == r.rejected
        assert sum(b.rows for b in r.batches) == r.accepted
        assert sorted(out.iterdir()) == sorted([out / "rejects.csv", *(Path(b.path) for b in r.batches)])
        return Run(result, batches, rows[1:])

    return _run


@pytest.fixture
def small_chunks(monkeypatch):
    """Tiny reads so that chunk boundaries fall everywhere."""

    def _set(size: int) -> None:
        monkeypatch.setattr(tuning, "CHUNK_SIZE", size)

    return _set


def body(batch: bytes) -> bytes:
    """A batch without its first (header) line."""
    return batch.split(b"\n", 1)[1]


# ---- the input format ---------------------------------------------------------------------------


def test_seed_sample_trims_names_and_values(run):
    r = run(b"pcId, param1, param2\n123, value1\n")
    assert r.batches == [b"batch=pcId,param1,param2\n123,value1\n"]
    assert r.result.id_column == "pcId"
    assert r.result.columns == ["param1", "param2"]
    assert (r.result.received, r.result.accepted) == (1, 1)


def test_bom_is_dropped(run):
    r = run(b"\xef\xbb\xbfpcId,a\n1,x\n")
    assert r.result.file_error is None
    assert r.batches == [b"batch=pcId,a\n1,x\n"]


def test_crlf_and_missing_final_newline(run):
    r = run(b"pcId,a,b\r\n1,x,y\r\n2, z\r\n3,,w")
    assert r.batches == [b"batch=pcId,a,b\n1,x,y\n2,z\n3,,w\n"]
    assert r.result.batches[0].line_runs == [[0, 2]]


def test_blank_lines_are_not_rows_but_count_for_line_numbers(run):
    r = run(b"\n\npcId,a\n1,x\n\n\n,y\n2,z\n\n")
    assert r.result.received == 3
    assert r.reasons == [(7, "empty_id")]
    assert r.result.batches[0].line_runs == [[0, 4], [1, 8]]


def test_quoted_fields_comma_and_escaped_quote(run):
    r = run(b'pcId,a,b\n1,"x,y","say ""hi"""\n2," q ",p\n')
    # Quoted content may hold raw , and " (written %2C / %22) but a raw space is still not encoding.
    assert r.batches == [b"batch=pcId,a,b\n1,x%2Cy,say%20%22hi%22\n"[:0] + b"batch=pcId,a,b\n2,q,p\n"]
    assert r.reasons == [(2, "invalid_encoding")]
    r = run(b'pcId,a,b\n1,"x,y","say%20""hi"""\n"2","",z\n')
    assert r.batches == [b"batch=pcId,a,b\n1,x%2Cy,say%20%22hi%22\n2,,z\n"]


def test_newline_inside_quotes(run):
    data = b'pcId,a,b\n1,"two\nlines",x\n2,y,z\n3,"a\r\nb\r\nc",\n4,k,\n'
    raw = run(data, input_mode="raw")
    assert raw.batches == [b"batch=pcId,a,b\n1,two%0Alines,x\n2,y,z\n3,a%0Ab%0Ac,\n4,k,\n"]
    assert raw.result.batches[0].line_runs == [[0, 2], [1, 4], [3, 8]]
    # Encoded mode: a raw line break is a control character; the record keeps its first line number.
    enc = run(data)
    assert enc.reasons == [(2, "invalid_encoding"), (5, "invalid_encoding")]
    assert enc.rejects[0][3] == '1,"two\nlines",x'
    assert body(enc.batches[0]) == b"2,y,z\n4,k,\n"


def test_quoted_record_across_chunk_boundaries(run, small_chunks):
    small_chunks(3)
    r = run(b'pcId,a\n1,"x\n\ny"\n2,"p,q"\n', input_mode="raw")
    assert r.batches == [b"batch=pcId,a\n1,x%0A%0Ay\n2,p%2Cq\n"]
    assert r.result.batches[0].line_runs == [[0, 2], [1, 5]]


def test_invalid_quoting(run):
    r = run(b'pcId,a\n1,"x"y\n2,ok\n3,"never closed\n4,fine\n')
    assert r.reasons == [(2, "invalid_quoting"), (4, "invalid_quoting")]
    assert "text after the closing quote" in r.rejects[0][2]
    assert "never closed" in r.rejects[1][2]
    assert body(r.batches[0]) == b"2,ok\n4,fine\n"


def test_unclosed_quote_longer_than_the_record_limit_resyncs(run, monkeypatch, small_chunks):
    monkeypatch.setattr(tuning, "MIN_RECORD_LIMIT", 64)
    small_chunks(16)
    lines = b"".join(b"%d,v\n" % i for i in range(3, 40))
    r = run(b'pcId,a\n1,"open\n' + lines)
    assert r.reasons == [(2, "invalid_quoting")]
    assert r.result.accepted == 37
    assert r.result.batches[0].line_runs == [[0, 3]]


def test_quote_inside_unquoted_field_is_data(run):
    r = run(b'pcId,a\n1,5"\n', input_mode="raw")
    assert r.batches == [b"batch=pcId,a\n1,5%22\n"]
    r = run(b'pcId,a\n1,5"\n')
    assert r.reasons == [(2, "invalid_encoding")]
    assert "%22" in r.rejects[0][2]


def test_overlong_line_without_newline_is_rejected_without_holding_it(run, monkeypatch, small_chunks):
    monkeypatch.setattr(tuning, "MIN_RECORD_LIMIT", 100)
    small_chunks(32)
    r = run(b"pcId,a\n1,x\n2," + b"y" * 5000 + b"\n3,z\n4," + b"w" * 300, row_max_bytes=20)
    assert r.reasons == [(3, "row_too_large"), (5, "row_too_large")]
    # What is kept is the line's start; the mark says how many bytes were cut, so they add up.
    for (_, _, detail, original), line in zip(
        r.rejects, [b"2," + b"y" * 5000, b"4," + b"w" * 300], strict=True
    ):
        kept, cut = re.fullmatch(r"(.*)…\[cut: ([\d,]+) bytes\]", original).groups()
        assert line.startswith(kept.encode())
        assert len(kept) + int(cut.replace(",", "")) == len(line)
        assert f"{len(line):,} bytes" in detail
    assert body(r.batches[0]) == b"1,x\n3,z\n"
    assert r.result.batches[0].line_runs == [[0, 2], [1, 4]]


# ---- the header ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["marketingCloudVisitorId", "ECID", "mcid", "Ecid", "MARKETINGCLOUDVISITORID"]
)
def test_experience_cloud_id_rejects_the_file(run, name):
    r = run(name.encode() + b",a\n1,x\n")
    assert r.result.file_error == (
        f"f.csv: line 1: header: first column '{name}' is an Experience Cloud id: Target's bulk API "
        "does not accept Experience Cloud ids; use pcId or thirdPartyId"
    )
    assert r.batches == []
    assert r.rejects == []
    assert r.result.received == 0


HEADER_HELP = (
    "the first line must be a header whose first column is exactly pcId (Target's visitor id) or "
    "thirdPartyId (your own id, mbox3rdPartyId)"
)


@pytest.mark.parametrize("name", ["pcid", "PCID", "thirdpartyid", "mbox3rdPartyId"])
def test_a_misspelt_id_column_is_named_in_the_message(run, name):
    r = run(name.encode() + b",a\n1,x\n")
    assert r.result.file_error == f"f.csv: line 1: header: the first column is '{name}'; {HEADER_HELP}"


@pytest.mark.parametrize("name", ["id", "email", "", "CRM-100001"])
def test_other_first_column_rejects_the_file_without_quoting_it(run, name):
    # Without a header the first field is a visitor id: it must not reach logs or messages.
    r = run(name.encode() + b",a\n1,x\n")
    assert r.result.file_error == (
        f"f.csv: line 1: header: the first column is not pcId or thirdPartyId; {HEADER_HELP}"
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"pcId,a,,b", "f.csv: line 1: header: column 3 has an empty name; give every column a name"),
        (b"pcId,a,b,", "f.csv: line 1: header: column 4 has an empty name; give every column a name"),
        (b"pcId,profile.", "f.csv: line 1: header: column 2 has an empty name; give every column a name"),
        (
            b"pcId,a,b,a",
            "f.csv: line 1: header: column name 'a' appears more than once; names must be unique",
        ),
        (
            b"pcId,a,profile.a",
            "f.csv: line 1: header: column name 'a' appears more than once; names must be unique",
        ),
        (
            b"pcId,pcId",
            "f.csv: line 1: header: column name 'pcId' appears more than once; names must be unique",
        ),
        (b"pcId", "f.csv: line 1: header: no parameter columns after pcId; add at least one"),
        (
            b"pcId,my param",
            "f.csv: line 1: header: column 2 name is not URL-encoded: raw space (write %20); "
            "URL-encode it or use input mode raw",
        ),
        (
            b"pcId,a%zz",
            "f.csv: line 1: header: column 2 name is not URL-encoded: '%' not followed by two hex digits; "
            "URL-encode it or use input mode raw",
        ),
        (b'pcId,"a\nb', "f.csv: line 1: header: a quoted field is never closed"),
        (b"pcId,\xff", "f.csv: line 1: header: not valid UTF-8"),
    ],
)
def test_bad_header_rejects_the_file(run, header, message):
    r = run(header + b"\n1,x\n")
    assert r.result.file_error == message
    assert r.batches == []


@pytest.mark.parametrize("data", [b"", b"\n\n\r\n", b"\xef\xbb\xbf"])
def test_no_header_rejects_the_file(run, data):
    r = run(data)
    assert r.result.file_error == (
        "f.csv: no header: the file is empty or has only blank lines; "
        "the first line must name the columns, starting with pcId or thirdPartyId"
    )


def test_header_after_blank_lines_gives_its_line_number(run):
    r = run(b"\n\nECID,a\n")
    assert r.result.file_error.startswith("f.csv: line 3: header: first column 'ECID'")


def test_header_only_file_is_accepted_with_a_warning(run):
    r = run(b"thirdPartyId,a\n")
    assert r.result.file_error is None
    assert (r.result.received, r.result.batches, r.result.id_column) == (0, [], "thirdPartyId")
    assert r.result.warnings == [
        "f.csv: the file has a header and no rows: nothing to send; check that the export is complete"
    ]


def test_a_file_of_blank_rows_after_its_header_gets_the_same_warning_and_a_skipped_row_does_not(run):
    assert "header and no rows" in run(b"pcId,a\n\n\n").result.warnings[0]
    assert run(b"pcId,a\n1,\n").result.warnings == []  # received 1, skipped 1: the counts tell it


def test_profile_prefix_is_removed_with_a_warning(run):
    r = run(b"pcId,profile.a, b ,profile.c\n1,x,y,z\n")
    assert r.result.columns == ["a", "b", "c"]
    assert r.batches == [b"batch=pcId,a,b,c\n1,x,y,z\n"]
    assert r.result.warnings == [
        "f.csv: line 1: header: removed the 'profile.' prefix from 2 columns (profile.a, profile.c) "
        "(Target adds it itself)"
    ]


def test_raw_mode_encodes_names(run):
    r = run("pcId,my param,prénom,a/b\n1,x,y,z\n".encode(), input_mode="raw")
    assert r.result.columns == ["my%20param", "pr%C3%A9nom", "a%2Fb"]
    assert r.batches[0].startswith(b"batch=pcId,my%20param,pr%C3%A9nom,a%2Fb\n")


# ---- rows -----------------------------------------------------------------------------------------


def test_each_reject_reason(run):
    data = b"\n".join(
        [
            b"pcId,a,b",
            b"1,ok,ok",  # 2 accepted
            b",x,y",  # 3 empty_id
            b"  ,x",  # 4 empty_id (trimmed)
            b"2,x,y,z",  # 5 too_many_fields
            b"3,\xff,y",  # 6 invalid_utf8
            b"4,50%,y",  # 7 invalid_encoding
            b"5,%4g,y",  # 8 invalid_encoding
            b"6,a b,y",  # 9 invalid_encoding (raw space)
            b"7,a\tb,y",  # 10 invalid_encoding (control)
            "8,é,y".encode(),  # 11 invalid_encoding (raw non-ASCII)
            b"9,%C3%28,y",  # 12 invalid_encoding (bad UTF-8 once decoded)
            b"x" * 257 + b",v",  # 13 id_too_long
            b"%41" * 256 + b",v",  # 14 accepted: 256 characters once decoded
            b"10,,",  # 15 skipped
            b"11",  # 16 skipped
            b"%zz,v",  # 17 invalid_encoding in the id
            b"12,%C3%A9,%F0%9F%98%80",  # 18 accepted
            b"13,%E0%80%80,",  # 19 invalid_encoding (overlong UTF-8)
        ]
    )
    r = run(data + b"\n")
    assert r.reasons == [
        (3, "empty_id"),
        (4, "empty_id"),
        (5, "too_many_fields"),
        (6, "invalid_utf8"),
        (7, "invalid_encoding"),
        (8, "invalid_encoding"),
        (9, "invalid_encoding"),
        (10, "invalid_encoding"),
        (11, "invalid_encoding"),
        (12, "invalid_encoding"),
        (13, "id_too_long"),
        (17, "invalid_encoding"),
        (19, "invalid_encoding"),
    ]
    details = {int(row[0]): row[2] for row in r.rejects}
    assert details[3] == "field 1 (pcId) is empty"
    assert details[5] == "4 fields, the header has 3 columns"
    assert details[6] == "byte 3 of the row is not valid UTF-8"
    assert details[7] == "field 2 (a): '%' not followed by two hex digits"
    assert details[9] == "field 2 (a): raw space (write %20)"
    assert details[10] == "field 2 (a): control character 0x09"
    assert details[11] == "field 2 (a): raw non-ASCII character (percent-encode its UTF-8 bytes)"
    assert details[12] == "field 2 (a): percent-escapes do not decode to valid UTF-8"
    assert details[13] == "field 1 (pcId) is 257 characters, over 256"
    assert details[17] == "field 1 (pcId): '%' not followed by two hex digits"
    assert body(r.batches[0]) == b"1,ok,ok\n" + b"%41" * 256 + b",v\n12,%C3%A9,%F0%9F%98%80\n"
    res = r.result
    assert (res.received, res.accepted, res.rejected, res.skipped) == (18, 3, 13, 2)
    assert res.reasons == {
        "empty_id": 2,
        "too_many_fields": 1,
        "invalid_utf8": 1,
        "invalid_encoding": 8,
        "id_too_long": 1,
    }
    # The rejects never echo a value in the detail, the original line is kept as text.
    assert r.rejects[3][3] == "3,\ufffd,y"


@pytest.mark.parametrize("ident", [b"a+b", b"a/b", b"a%2Bb", b"a%2fb", b"%2F"])
def test_third_party_id_with_plus_or_slash(run, ident):
    r = run(b"thirdPartyId,a\n" + ident + b",x\nok%2A,y\n")
    assert r.reasons == [(2, "invalid_third_party_id")]
    assert body(r.batches[0]) == b"ok%2A,y\n"


def test_third_party_id_rules_in_raw_mode(run):
    r = run(b"thirdPartyId,a\na+b,x\na/b,x\nj d,x y\n", input_mode="raw")
    assert r.reasons == [(2, "invalid_third_party_id"), (3, "invalid_third_party_id")]
    assert body(r.batches[0]) == b"j%20d,x%20y\n"


def test_pc_id_may_hold_slash_and_an_encoded_plus_but_not_a_raw_one(run):
    # Target form-decodes the id too: a raw + would reach it as a space.
    r = run(b"pcId,a\na%2Bb/c,x\na+b,x\n")
    assert body(r.batches[0]) == b"a%2Bb/c,x\n"
    assert r.reasons == [(3, "ambiguous_plus")]


# Target form-decodes a batch: & would split it, = and ? and # are syntax in a single-update query.
@pytest.mark.parametrize("fast_path", [True, False])
def test_encoded_form_syntax_is_escaped_and_a_raw_plus_rejected(run, monkeypatch, fast_path):
    monkeypatch.setattr(tuning, "FAST_PATH", fast_path)
    r = run(
        b"thirdPartyId,a,b\n"
        b"CRM-1,x&mbox3rdPartyId=CRM-VICTIM,ok\n"  # 2: one value, never another profile
        b"CRM-2,a#b,c?d\n"  # 3: # must not cut the row
        b"CRM-3,q=1,%26already\n"  # 4
        b"CRM&4,v,w\n"  # 5: the id too
        b"CRM-5,a+b,x\n"  # 6: ambiguous_plus
        b'CRM-6,"x,&y",z\n'  # 7: quoted
    )
    assert body(r.batches[0]) == (
        b"CRM-1,x%26mbox3rdPartyId%3DCRM-VICTIM,ok\n"
        b"CRM-2,a%23b,c%3Fd\n"
        b"CRM-3,q%3D1,%26already\n"
        b"CRM%264,v,w\n"
        b"CRM-6,x%2C%26y,z\n"
    )
    assert r.reasons == [(6, "ambiguous_plus")]
    assert (
        r.rejects[0][2]
        == "field 2 (a): raw '+' is a space to Target but a plus sign in plain text: write %20 or %2B"
    )


def test_raw_mode_encodes_every_form_syntax_character(run):
    r = run(b"pcId,a\n1,x&y=z?w#v+u%t s\n", input_mode="raw")
    assert body(r.batches[0]) == b"1,x%26y%3Dz%3Fw%23v%2Bu%25t%20s\n"


def test_encoded_header_names_escape_form_syntax_and_refuse_plus(run):
    r = run(b"pcId,a&b,c=d\n1,x,y\n")
    assert r.result.columns == ["a%26b", "c%3Dd"]
    r = run(b"pcId,a+b\n1,x\n")
    assert "raw '+'" in r.result.file_error


def test_id_length_counts_characters(run):
    ok = "é" * 256
    r = run(f"pcId,a\n{ok},x\n{ok}é,x\n".encode(), input_mode="raw")
    assert r.reasons == [(3, "id_too_long")]
    assert r.result.accepted == 1


@pytest.mark.parametrize("fast", [True, False])
def test_id_max_chars_is_the_limit_on_both_paths(run, monkeypatch, fast):
    # The fast path once hard-coded 256: with ID_MAX_CHARS=10 a 50-character id was accepted.
    monkeypatch.setattr(tuning, "FAST_PATH", fast)
    settings = Settings.from_env({"ID_MAX_CHARS": "10"})
    r = run(b"pcId,a\n" + b"q" * 50 + b",v\n" + b"q" * 10 + b",v\n" + b"q" * 11 + b",v\n", **vars(settings))
    assert r.reasons == [(2, "id_too_long"), (4, "id_too_long")]
    assert r.rejects[0][2] == "field 1 (pcId) is 50 characters, over 10"
    assert body(r.batches[0]) == b"q" * 10 + b",v\n"


def test_row_too_large_at_the_profile_limit(run):
    # Decoded values: %41 is one byte. 10 bytes is the limit.
    data = b"pcId,a,b\n1,%41%41%41%41%41,12345\n2,%41%41%41%41%41,123456\n"
    r = run(data, row_max_bytes=10)
    assert r.reasons == [(3, "row_too_large")]
    assert r.rejects[0][2] == "values are 11 bytes decoded, over the 10-byte profile limit"
    assert body(r.batches[0]) == b"1,%41%41%41%41%41,12345\n"


def test_skipped_rows(run):
    r = run(b"pcId,a,b\n1\n2,,\n3, , \n4,,x\n")
    assert (r.result.received, r.result.skipped, r.result.accepted, r.result.rejected) == (4, 3, 1, 0)
    assert body(r.batches[0]) == b"4,,x\n"


def test_fewer_fields_than_header_are_fine(run):
    r = run(b"pcId,a,b,c\n1,x\n2,,,y\n")
    assert body(r.batches[0]) == b"1,x\n2,,,y\n"


def test_raw_mode_encodes_ids_and_values(run):
    data = 'pcId,a,b\njohn smith,Zoé & co,50% off\n2,a+b/c~d_e.f-g,"x,""y"""\n3,  spaced  ,\t\n'
    r = run(data.encode(), input_mode="raw")
    assert body(r.batches[0]) == (
        b"john%20smith,Zo%C3%A9%20%26%20co,50%25%20off\n2,a%2Bb%2Fc~d_e.f-g,x%2C%22y%22\n3,spaced,%09\n"
    )


def test_raw_mode_invalid_utf8(run, small_chunks):
    small_chunks(7)
    r = run(b"pcId,a\n1,ok\n2,\xc3\x28\n3,\xc3\xa9\n", input_mode="raw")
    assert r.reasons == [(3, "invalid_utf8")]
    assert body(r.batches[0]) == b"1,ok\n3,%C3%A9\n"


# ---- batches --------------------------------------------------------------------------------------


def rows_file(n: int, start: int = 1) -> bytes:
    return b"pcId,a\n" + b"".join(b"%d,v%d\n" % (i, i) for i in range(start, start + n))


@pytest.mark.parametrize("fast", [True, False])
def test_batch_row_limit_boundary(run, monkeypatch, fast):
    monkeypatch.setattr(tuning, "FAST_PATH", fast)
    r = run(rows_file(6), batch_max_rows=3)
    assert [b.rows for b in r.result.batches] == [3, 3]
    assert r.batches[1] == b"batch=pcId,a\n4,v4\n5,v5\n6,v6\n"
    r = run(rows_file(7), batch_max_rows=3)
    assert [b.rows for b in r.result.batches] == [3, 3, 1]
    assert [b.name for b in r.result.batches] == ["batch-00001.txt", "batch-00002.txt", "batch-00003.txt"]
    assert [(b.first_line, b.last_line) for b in r.result.batches] == [(2, 4), (5, 7), (8, 8)]


@pytest.mark.parametrize("fast", [True, False])
def test_batch_byte_limit_boundary(run, monkeypatch, fast):
    monkeypatch.setattr(tuning, "FAST_PATH", fast)
    header = b"batch=pcId,a\n"  # 13 bytes
    rows = b"1,v1\n2,v2\n3,v3\n"  # 5 bytes each
    size = len(header) + len(rows)  # 28
    # One byte under the limit fits in one batch ...
    r = run(b"pcId,a\n" + rows, batch_max_bytes=size + 1)
    assert r.batches == [header + rows]
    assert r.result.batches[0].bytes == size
    # ... exactly at the limit does not.
    r = run(b"pcId,a\n" + rows, batch_max_bytes=size)
    assert r.batches == [header + rows[:10], header + rows[10:]]
    assert [b.bytes for b in r.result.batches] == [23, 18]


def test_row_that_can_never_fit_a_batch(run):
    # header 13 bytes + "1,v1\n" 5 bytes = 18: a limit of 18 leaves no room for it, 19 does.
    r = run(b"pcId,a\n1,v1\n2,v\n", batch_max_bytes=18)
    assert r.reasons == [(2, "row_too_large")]
    assert "cannot fit in a batch under 18 bytes" in r.rejects[0][2]
    assert r.batches == [b"batch=pcId,a\n2,v\n"]


def test_line_runs_map_batch_rows_back_to_source_lines(run, small_chunks):
    small_chunks(10)
    data = b'pcId,a\n1,x\n2,x\n\n3,x\n,bad\n4,x\n5,x\n6,\n7,x\n8,"q"\n9,x\n'
    r = run(data, batch_max_rows=4)
    b1, b2 = r.result.batches
    assert b1.line_runs == [[0, 2], [2, 5], [3, 7]]
    assert [b1.source_line(i) for i in range(4)] == [2, 3, 5, 7]
    assert [b2.source_line(i) for i in range(b2.rows)] == [8, 10, 11, 12]
    assert b2.line_runs == [[0, 8], [1, 10]]
    with pytest.raises(IndexError):
        b1.source_line(4)


def test_on_batch_is_called_as_each_batch_closes(tmp_path):
    seen: list[tuple[int, bool, int]] = []

    def on_batch(info: BatchInfo) -> None:
        path = Path(info.path)
        seen.append((info.index, path.exists(), len(list(tmp_path.glob("batch-*.txt")))))
        path.unlink()  # what the Lambda does after uploading

    result = validate_and_split(
        io.BytesIO(rows_file(5)), tmp_path, Settings(batch_max_rows=2), on_batch=on_batch
    )
    assert seen == [(1, True, 1), (2, True, 1), (3, True, 1)]
    assert result.accepted == 5


def test_rejects_csv_escapes_spreadsheet_formulas(run):
    data = b"pcId,a\n=1+1,\x01\n+1,\x01\n-1,\x01\n@SUM(A1),\x01\n\t1,\x01\n1,\x01\n"
    r = run(data)
    assert [row[3] for row in r.rejects] == [
        "'=1+1,\x01",
        "'+1,\x01",
        "'-1,\x01",
        "'@SUM(A1),\x01",
        "'\t1,\x01",
        "1,\x01",
    ]


def test_rejects_csv_is_written_with_header_only_when_clean(tmp_path):
    validate_and_split(io.BytesIO(b"pcId,a\n1,x\n"), tmp_path, Settings())
    assert (tmp_path / "rejects.csv").read_bytes() == b"line,reason,detail,original\r\n"


# ---- duplicates -----------------------------------------------------------------------------------


def test_duplicate_ids_are_counted_across_chunks_and_batches(run, small_chunks, monkeypatch):
    small_chunks(9)
    monkeypatch.setattr(tuning, "DUP_BUFFER", 1)  # a spill after every hash
    monkeypatch.setattr(tuning, "DUP_SET_MAX", 2)  # and splits down to the last bit
    ids = [1, 2, 3, 1, 4, 5, 2, 1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 3]
    data = b"pcId,a\n" + b"".join(b"%d,x\n" % i for i in ids) + b'1,,\n20,"q"\n20,y\n,z\n'
    r = run(data, batch_max_rows=4)
    assert r.result.duplicate_ids == 5  # 1 twice, 2, 3, 20 (the skipped and the rejected row do not count)
    assert r.result.warnings == [
        "f.csv: 5 rows repeat an id from an earlier row; "
        "Target's updates of one id override each other, and batches may be applied in any order"
    ]


def test_no_duplicates_no_warning(run):
    r = run(rows_file(50))
    assert (r.result.duplicate_ids, r.result.warnings) == (0, [])


def reference_duplicates(hashes: list[int]) -> int:
    return len(hashes) - len(set(hashes))


def count_with(tmp_path: Path, chunks: list[list[int]], singles: bool = False) -> tuple[int, dict]:
    """Feed ``chunks`` to a counter (each hash on its own when ``singles``); return the count and
    what it did: spill files made, deepest split, largest block deduplicated in memory and largest
    buffer between calls."""
    seen = {"files": 0, "depth": 0, "largest_set": 0, "largest_buffer": 0}
    distinct, unique = duplicates._distinct, duplicates._unique

    def spy(real):
        def counted(hashes):
            seen["largest_set"] = max(seen["largest_set"], len(hashes))
            return real(hashes)

        return counted

    counter = duplicates.DuplicateCounter(tmp_path)
    duplicates._distinct, duplicates._unique = spy(distinct), spy(unique)
    make_temp, count_file = counter._temp, counter._count_file

    def temp():
        seen["files"] += 1
        return make_temp()

    def counted(spill, depth):
        seen["depth"] = max(seen["depth"], depth)
        return count_file(spill, depth)

    counter._temp, counter._count_file = temp, counted
    try:
        for chunk in chunks:
            if singles:
                for h in chunk:
                    counter.add_hash(h % (1 << 64))
            else:
                counter.add(np.array(chunk, dtype=np.int64).view(np.uint64))
            seen["largest_buffer"] = max(seen["largest_buffer"], counter._buffered)
        return counter.count(), seen
    finally:
        counter.close()
        duplicates._distinct, duplicates._unique = distinct, unique


def test_duplicate_counter_spills_and_splits_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "DUP_PARTITION_BITS", 3)
    monkeypatch.setattr(tuning, "DUP_BUFFER", 50)
    monkeypatch.setattr(tuning, "DUP_SET_MAX", 20)
    rng = random.Random(7)
    pool = [rng.getrandbits(64) - (1 << 63) for _ in range(700)] + [-(1 << 63), (1 << 63) - 1, 0, -1]
    hashes = [rng.choice(pool) for _ in range(3000)]
    chunks = [hashes[i : i + 37] for i in range(0, len(hashes), 37)]
    count, seen = count_with(tmp_path, chunks)
    assert count == reference_duplicates(hashes)
    assert seen["files"] > 8  # the 8 partitions spilled and then some were split again
    assert seen["depth"] >= 2
    assert 0 < seen["largest_set"] <= 20  # never more than DUP_SET_MAX hashes deduplicated at once
    assert seen["largest_buffer"] < 50  # a spill once the buffer holds 50 hashes
    assert count_with(tmp_path, chunks, singles=True)[0] == count


def test_duplicate_counter_matches_a_set_on_random_data(tmp_path, monkeypatch):
    rng = random.Random(11)
    for case in range(50):
        bits = rng.choice([1, 2, 4, 7, 8])
        monkeypatch.setattr(tuning, "DUP_PARTITION_BITS", bits)
        monkeypatch.setattr(tuning, "DUP_BUFFER", rng.choice([1, 3, 64, 1 << 18]))
        monkeypatch.setattr(tuning, "DUP_SET_MAX", rng.choice([1, 2, 5, 100, 1 << 17]))
        distinct = rng.choice([1, 2, 50, 400, 5000])
        # Hashes that share their top bits (or all but the last) force splits down to every level.
        spread = rng.choice([64, 64, 12, 1])
        pool = [(rng.getrandbits(spread) << (64 - spread)) - (1 << 63) for _ in range(distinct)]
        hashes = [rng.choice(pool) for _ in range(rng.randrange(1000))]
        cut = sorted(rng.sample(range(len(hashes) + 1), min(5, len(hashes) + 1)))
        chunks = [hashes[a:b] for a, b in zip([0, *cut], [*cut, len(hashes)], strict=True)]
        singles = rng.random() < 0.3
        assert count_with(tmp_path, chunks, singles)[0] == reference_duplicates(hashes), (case, bits)


def test_duplicate_counter_one_id_many_times_splits_to_the_last_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "DUP_PARTITION_BITS", 5)  # 64 is not a multiple of 5
    monkeypatch.setattr(tuning, "DUP_BUFFER", 4)
    monkeypatch.setattr(tuning, "DUP_SET_MAX", 1)
    hashes = [-(1 << 63)] * 9 + [(1 << 63) - 1] * 4 + [-(1 << 63) + 1] * 3
    count, seen = count_with(tmp_path, [hashes[:7], hashes[7:]])
    assert count == 13
    assert seen["depth"] == 13  # ceil(64 / 5) levels of 5 bits, then every bit is shared


def test_duplicate_counter_without_spill_counts_in_memory(tmp_path):
    count, seen = count_with(tmp_path, [[1, 2, 3, 2], [1, -5]])
    assert (count, seen["files"]) == (2, 0)


def test_id_hash_is_the_same_one_by_one_and_vectorised():
    # The per-record path hashes one id at a time, the fast path a chunk's ids at once: a repeat
    # across the two is only counted when both give the same hash, wherever the id sits in the
    # buffer (its last bytes at the buffer's end, a buffer under 8 bytes).
    rng = random.Random(13)
    seed = rng.getrandbits(64)
    for _ in range(300):
        ids = [
            bytes(rng.choice(b"ab%9,\n\x00\xff") for _ in range(rng.choice([1, 2, 7, 8, 9, 16, 17, 40])))
            for _ in range(rng.randrange(1, 6))
        ]
        buf = bytes(rng.randrange(256) for _ in range(rng.randrange(3))) + b"".join(ids)
        starts, at = [], len(buf) - sum(map(len, ids))
        for ident in ids:
            starts.append(at)
            at += len(ident)
        got = duplicates.hash_ids(
            buf, np.array(starts, dtype=np.int64), np.array([len(i) for i in ids], dtype=np.int64), seed
        )
        assert got.tolist() == [duplicates.hash_id(i, seed) for i in ids]


def test_id_hash_has_no_collisions_on_structured_ids():
    # Sequential numbers, one-byte variations of long ids and Thue-Morse strings (which break
    # polynomial hashing modulo 2**64) all hash apart.
    seed = 12345
    ids = [b"%d" % i for i in range(200_000)] + [b"%032d" % i for i in range(100_000)]
    ids += [bytes([65 + (i >> 8) % 26, 65 + i % 26]) * 20 + b"x%d" % i for i in range(50_000)]
    thue = bytearray(b"a")
    while len(thue) < 4096:
        thue += bytes(b"a"[0] + b"b"[0] - c for c in thue)
    ids += [bytes(thue[:n]) for n in range(1, 4097)]
    ids += [bytes(b"a"[0] + b"b"[0] - c for c in thue[:n]) for n in range(1, 4097)]
    buf = b"".join(ids)
    lengths = np.array([len(i) for i in ids], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    hashes = duplicates.hash_ids(buf, starts, lengths, seed)
    assert len(set(hashes.tolist())) == len(set(ids)) == len(ids)


@pytest.mark.parametrize("mode", ["encoded", "raw"])
@pytest.mark.parametrize("fast", [True, False])
def test_duplicate_ids_match_a_set_of_the_accepted_ids(run, monkeypatch, small_chunks, fast, mode):
    # Short and long runs of clean lines (hashed one by one or at once) and lines of the per-row
    # path (a quoted value) share ids: every repeat counts, whichever path each row took.
    monkeypatch.setattr(tuning, "FAST_PATH", fast)
    monkeypatch.setattr(tuning, "DUP_BUFFER", 7)
    monkeypatch.setattr(tuning, "DUP_SET_MAX", 5)
    small_chunks(4000)  # runs of 100 lines fit in a chunk
    rng = random.Random(3)
    lines = []
    for _ in range(80):
        for _ in range(rng.choice([1, 2, 5, 40, 100])):
            lines.append(b"%d,v" % rng.randrange(300) if rng.random() < 0.97 else b",v")
        lines.append(b'%d,"q"' % rng.randrange(300))
    r = run(b"pcId,a\n" + b"\n".join(lines) + b"\n", batch_max_rows=333, input_mode=mode)
    ids = [line.split(b",")[0] for batch in r.batches for line in body(batch).splitlines()]
    assert len(ids) == r.result.accepted > 0.95 * len(lines) > 1900
    assert r.result.duplicate_ids == len(ids) - len(set(ids)) > len(ids) - 300


# ---- result -------------------------------------------------------------------------------------


def test_to_dict_is_json_friendly(run):
    r = run(b"pcId,a\n1,x\n,y\n")
    d = json.loads(json.dumps(r.result.to_dict()))
    assert d["received"] == 2
    assert d["batches"][0]["line_runs"] == [[0, 2]]
    assert d["batches"][0]["name"] == "batch-00001.txt"
    assert d["reasons"] == {"empty_id": 1}
    assert d["file_error"] is None


# ---- fast path against the per-row reference ------------------------------------------------------

IDS = [
    b"1",
    b"2",
    b"3",
    b"22",
    b"22",
    b"x.y-z_~",
    b"%C3%A9",
    b"abc",
    b"a+b",
    b"a/b",
    b"x%2Fy",
    b"",
    b" ",
    b" 7 ",
    b"%41",
    b"q" * 257,
    b"q" * 50,
    b"%C3%A9" * 5,  # 5 characters in 30 bytes
    b"abcdefghij",
    b"\xff",
    b'"5"',
    b"9",
    b"a\x00b",
]
VALUES = [
    b"v",
    b"v",
    b"v1",
    b"",
    b"",
    b"!*'()",
    b"%7E%41",
    b" ",
    b"a%20b",
    b"%C3%A9",
    b"%E2%82%AC",
    b"%F0%9F%98%80",
    b"%C3",
    b"%c3%a9",
    b"%zz",
    b"50%",
    b"a b",
    "é".encode(),
    b"\xc3\x28",
    b'"x,y"',
    b'"a""b"',
    b'"multi\nline"',
    b'"open',
    b'"x"y',
    b"a\tb",
    b"+/~",
    b"%00",
    b"w" * 40,
    b"nul\x00",
    b"\x7f",
]


def random_file(rng: random.Random, id_column: bytes) -> bytes:
    lines = [id_column + b",a,b,c"]
    for _ in range(rng.randrange(60)):
        if rng.random() < 0.08:
            lines.append(b"")
            continue
        fields = [rng.choice(IDS)] + [rng.choice(VALUES) for _ in range(rng.choice([0, 1, 2, 3, 3, 3, 4]))]
        lines.append(b",".join(fields))
    newline = rng.choice([b"\n", b"\r\n"])
    data = newline.join(lines)
    return data + (newline if rng.random() < 0.7 else b"")


def snapshot(r: Run) -> tuple:
    d = r.result.to_dict()
    for b in d["batches"]:
        b.pop("path")
    d.pop("rejects_path")
    return d, r.batches, r.rejects


def test_fast_path_matches_per_row_reference(run, monkeypatch):
    rng = random.Random(20240601)
    for case in range(150):
        id_column = rng.choice([b"pcId", b"thirdPartyId"])
        data = random_file(rng, id_column)
        settings = {
            "input_mode": rng.choice(["encoded", "raw"]),
            "batch_max_rows": rng.choice([1, 3, 7, 500_000]),
            "batch_max_bytes": rng.choice([60, 120, 400, 50_000_000]),
            "row_max_bytes": rng.choice([8, 30, 65536]),
            # The fast path's id bound is built from the setting (it once hard-coded 256).
            "id_max_chars": rng.choice([1, 5, 10, 49, 256]),
        }
        monkeypatch.setattr(tuning, "FAST_PATH", False)
        monkeypatch.setattr(tuning, "CHUNK_SIZE", 1 << 20)
        monkeypatch.setattr(tuning, "READ_AHEAD", False)
        expected = snapshot(run(data, **settings))
        monkeypatch.setattr(tuning, "FAST_PATH", True)
        monkeypatch.setattr(tuning, "READ_AHEAD", rng.choice([True, False]))
        monkeypatch.setattr(tuning, "CHUNK_SIZE", rng.choice([1, 2, 5, 16, 64, 1 << 20]))
        monkeypatch.setattr(tuning, "DUP_PARTITION_BITS", rng.choice([1, 3, 7]))
        monkeypatch.setattr(tuning, "DUP_BUFFER", rng.choice([1, 4, 1 << 18]))
        monkeypatch.setattr(tuning, "DUP_SET_MAX", rng.choice([1, 3, 1 << 17]))
        assert snapshot(run(data, **settings)) == expected, (case, data, settings)


# Pieces of encoded-mode fields: clean ones, and each way a line can fail or be rewritten by the
# per-row path (escapes of every UTF-8 edge, the bytes around the allowed set, form syntax, quotes).
TOKENS = [
    b"a",
    b"Z9",
    b"x.y-z_~",
    b"!$'()*",
    b";:<>@[]^`{|}",
    b"/",
    b"\\",
    b"%41",
    b"%7e",
    b"%2B",
    b"%2b",
    b"%2F",
    b"%2f",
    b"%25",
    b"%00",
    b"%0A",
    b"%7F",
    b"%C3%A9",
    b"%c3%a9",
    b"%E2%82%AC",
    b"%F0%9F%98%80",
    b"%F4%8F%BF%BF",
    b"%EF%BF%BF",
    b"%C2%80",
    b"%DF%BF",
    b"%E0%A0%80",
    b"%ED%9F%BF",
    b"%EE%80%80",
    b"%C0%80",
    b"%C1%BF",
    b"%E0%80%AF",
    b"%F0%80%80%80",
    b"%ED%A0%80",
    b"%ED%BF%BF",
    b"%F4%90%80%80",
    b"%F5%80%80%80",
    b"%FF",
    b"%80",
    b"%BF",
    b"%C3",
    b"%E2%82",
    b"%F0%9F%98",
    b"%C3%41",
    b"%C3a%A9",
    b"%C3%C3%A9",
    b"%E2%82%AC%AC",
    b"%",
    b"%4",
    b"%G1",
    b"%G1%80%80%80",
    b"%8%C3%A9",
    b"%4g",
    b"%%41",
    b"%%",
    b" ",
    b"+",
    b"&",
    b"#",
    b"?",
    b"=",
    b'"',
    b"\t",
    b"\x7f",
    b"\x80",
    b"\xc3\xa9",
    b"\xff",
    b"\x00",
]


def adversarial_field(rng: random.Random) -> bytes:
    if rng.random() < 0.15:
        return b""
    field = b"".join(
        rng.choice(TOKENS) if rng.random() < 0.3 else rng.choice(TOKENS[:7])
        for _ in range(rng.randrange(1, 5))
    )
    if rng.random() < 0.05:
        field = b'"' + field.replace(b'"', b'""') + rng.choice([b",", b"", b"\n"]) + b'"'
    if rng.random() < 0.03:
        field = field * rng.randrange(2, 30)  # long ids and lines around the limits
    return field


def adversarial_file(rng: random.Random, id_column: bytes) -> bytes:
    lines = [id_column + b",a,b,c"]
    for _ in range(rng.randrange(1, 120)):
        if rng.random() < 0.05:
            lines.append(b"")
            continue
        fields = [adversarial_field(rng) for _ in range(rng.choice([1, 2, 2, 3, 4, 4, 4, 5]))]
        if rng.random() < 0.6:  # mostly clean lines: long runs, broken by the others
            fields = [rng.choice([b"1", b"22", b"333", b"q%C3%A9", b"4/4", b"x" * 9]), *fields[1:]]
            fields[1:] = [
                f if rng.random() < 0.1 else rng.choice([*TOKENS[:7], b"v%E2%82%AC", b""]) for f in fields[1:]
            ]
        lines.append(b",".join(fields))
    newline = rng.choice([b"\n", b"\n", b"\r\n"])
    data = newline.join(lines) + (newline if rng.random() < 0.8 else b"")
    return (b"\xef\xbb\xbf" if rng.random() < 0.1 else b"") + data


@pytest.mark.parametrize("mode", ["encoded", "raw"])
def test_fast_path_matches_per_row_reference_on_adversarial_lines(run, monkeypatch, mode):
    # The fast path must never accept what the per-row path rejects or rewrites, nor miss-number a
    # line: same batches byte for byte, rejects, reasons, line runs and duplicate count.
    rng = random.Random(20261202)
    for case in range(300 if mode == "encoded" else 100):
        id_column = rng.choice([b"pcId", b"thirdPartyId"])
        data = adversarial_file(rng, id_column)
        settings = {
            "batch_max_rows": rng.choice([2, 50, 500_000]),
            "batch_max_bytes": rng.choice([90, 300, 50_000_000]),
            "row_max_bytes": rng.choice([12, 40, 65536]),
            "id_max_chars": rng.choice([1, 3, 9, 256]),
            "input_mode": mode,
        }
        monkeypatch.setattr(tuning, "FAST_PATH", False)
        monkeypatch.setattr(tuning, "CHUNK_SIZE", 1 << 20)
        monkeypatch.setattr(tuning, "READ_AHEAD", False)
        expected = snapshot(run(data, **settings))
        monkeypatch.setattr(tuning, "FAST_PATH", True)
        monkeypatch.setattr(tuning, "CHUNK_SIZE", rng.choice([1, 7, 64, 333, 1 << 20]))
        assert snapshot(run(data, **settings)) == expected, (case, data, settings)


def test_many_bad_utf8_escapes_in_one_chunk_are_all_sent_to_the_per_row_path(run, monkeypatch):
    # Past the few decode errors located one by one, every line with an escaped non-ASCII byte
    # takes the per-row path: the good ones are still accepted there, the bad ones rejected.
    lines = [b"%d,%s" % (i, [b"%C3%A9", b"%C3", b"ok", b"%E2%82%AC"][i % 4]) for i in range(200)]
    data = b"pcId,a\n" + b"\n".join(lines) + b"\n"
    monkeypatch.setattr(tuning, "FAST_PATH", False)
    expected = snapshot(run(data))
    monkeypatch.setattr(tuning, "FAST_PATH", True)
    got = snapshot(run(data))
    assert got == expected
    assert got[0]["rejected"] == 50 and got[0]["accepted"] == 150


# ---- bounds: what one file can make the engine write (issue 11) ----------------------------------


def test_raw_mode_rejects_control_characters_in_ids_and_values(run):
    data = b'pcId,a,b\n1,ok,\n2\x00x,v,\n3,v\x00,\n4,v,x\x1by\n5,\x7f,\n6,a\tb,"c\nd"\n7\t,v,\n'
    r = run(data, input_mode="raw")
    assert r.reasons == [
        (3, "control_character"),
        (4, "control_character"),
        (5, "control_character"),
        (6, "control_character"),
        (9, "control_character"),
    ]
    assert [row[2] for row in r.rejects] == [
        "field 1 (pcId): control character 0x00",
        "field 2 (a): control character 0x00",
        "field 3 (b): control character 0x1B",
        "field 2 (a): control character 0x7F",
        "field 1 (pcId): control character 0x09",
    ]
    # Tab and a line break inside a quoted value are text layout: encoded, not rejected.
    assert body(r.batches[0]) == b"1,ok,\n6,a%09b,c%0Ad\n"
    assert b"%00" not in r.batches[0]


def test_raw_mode_header_name_with_a_control_character_rejects_the_file(run):
    r = run(b"pcId,a\x00b\n1,x\n", input_mode="raw")
    assert "column 2 name holds a control character" in r.result.file_error


def test_rejects_csv_lists_at_most_the_configured_rows_and_counts_the_rest(run):
    data = b"pcId,a\n" + b"".join(b"%d,50%%\n" % i for i in range(7)) + b",x\n1,ok\n"
    r = run(data, rejects_max_rows=3)
    assert r.reasons == [(2, "invalid_encoding"), (3, "invalid_encoding"), (4, "invalid_encoding")]
    assert (r.result.rejected, r.result.rejected_unlisted) == (8, 5)
    assert r.result.reasons == {"invalid_encoding": 7, "empty_id": 1}
    assert r.result.accepted == 1
    assert any(
        "5 more are counted by reason but not listed (REJECTS_MAX_ROWS)" in w for w in r.result.warnings
    )
    # 0 = no limit
    assert len(run(data, rejects_max_rows=0).rejects) == 8


def test_a_small_gzip_of_long_bad_rows_makes_a_bounded_rejects_file(tmp_path):
    # 400 rejected lines of 600 KB each: 240 MB of text, a few hundred KB compressed. Without the
    # caps rejects.csv would be as large; with them it holds 100 rows of at most 1 KB each.
    line = b"1," + b"%zz" * 200_000 + b"\n"
    settings = Settings(rejects_max_rows=100, rejects_original_max_bytes=1024)
    stream = io.BytesIO(b"pcId,a\n" + line * 400)
    result = validate_and_split(stream, tmp_path, settings)
    assert (result.rejected, result.rejected_unlisted) == (400, 300)
    size = (tmp_path / "rejects.csv").stat().st_size
    assert size < 100 * (1024 + 200), size
    with (tmp_path / "rejects.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))  # the csv module's default field limit (128 KB) holds
    assert len(rows) == 100
    assert rows[0]["original"].endswith(f"…[cut: {len(line) - 1 - 1024:,} bytes]")


def test_a_rejected_row_between_128_kb_and_1_mb_is_kept_cut_and_readable(run):
    line = b"1," + b"x y" * 100_000  # 300 KB, under the 1 MB record limit: held whole, then cut
    r = run(b"pcId,a\n" + line + b"\n2,ok\n")
    assert r.reasons == [(2, "invalid_encoding")]
    original = r.rejects[0][3]
    assert original == line[:4096].decode() + f"…[cut: {len(line) - 4096:,} bytes]"


def test_too_many_header_columns_rejects_the_file_with_the_setting_named(run):
    header = b"pcId," + b",".join(b"c%d" % i for i in range(11))
    r = run(header + b"\n1,x\n", header_max_columns=10)
    assert r.result.file_error == (
        "f.csv: line 1: header: 11 parameter columns, over the maximum of 10 (HEADER_MAX_COLUMNS); "
        "split the file into files with fewer columns"
    )
    assert run(header + b"\n1,x\n", header_max_columns=11).result.file_error is None


def test_the_profile_prefix_warning_is_a_count_and_the_first_names(run):
    names = [b"profile.attribute%05d" % i for i in range(60_000)]
    r = run(b"pcId," + b",".join(names) + b"\n1,x\n", header_max_columns=0)
    [warning] = r.result.warnings
    assert len(warning) < 400
    assert "from 60,000 columns (profile.attribute00000, " in warning
    assert "profile.attribute00004 and 59,995 more)" in warning


def test_a_duplicate_long_column_name_is_cut_in_the_message(run):
    name = b"n" * 500_000
    r = run(b"pcId," + name + b"," + name + b"\n1,x\n")
    assert "appears more than once" in r.result.file_error
    assert len(r.result.file_error) < 300


# ---- read-ahead: the next chunk is read in a thread ----------------------------------------------


class Source:
    """A stream that serves ``data`` in reads, then raises ``error`` (if any) or ends; counts reads."""

    def __init__(self, data: bytes, error: Exception | None = None, endless: bool = False) -> None:
        self.data, self.error, self.endless, self.reads = data, error, endless, 0

    def read(self, size: int) -> bytes:
        self.reads += 1
        if self.endless:
            return b"1,x\n" * (size // 4 + 1)
        piece, self.data = self.data[:size], self.data[size:]
        if not piece and self.error is not None:
            raise self.error
        return piece


def read_ahead_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("validate-read-ahead")]


@pytest.mark.parametrize("read_ahead", [True, False])
def test_an_error_from_the_stream_is_raised_as_it_was(tmp_path, small_chunks, monkeypatch, read_ahead):
    # The ingest turns these into a rejected drop (FILE_MAX_BYTES, a corrupt gzip): type and
    # message must come through the reader thread unchanged.
    monkeypatch.setattr(tuning, "READ_AHEAD", read_ahead)
    small_chunks(8)
    error = EOFError("Compressed file ended before the end-of-stream marker was reached")
    with pytest.raises(EOFError) as raised:
        validate_and_split(Source(rows_file(20), error), tmp_path, Settings())
    assert raised.value is error
    assert read_ahead_threads() == []


def test_the_reader_thread_stops_when_the_file_is_rejected(tmp_path, small_chunks):
    # A bad header ends the run after the first chunk; an endless stream must not keep a thread
    # reading (or waiting to hand over a chunk) after validate_and_split returns.
    small_chunks(64)
    source = Source(b"", endless=True)
    result = validate_and_split(source, tmp_path, Settings())
    assert result.file_error is not None
    assert read_ahead_threads() == []
    assert source.reads <= 2  # the one used and the one read ahead


def test_read_ahead_gives_the_same_result_as_plain_reads(run, monkeypatch, small_chunks):
    rng = random.Random(5)
    data = b"pcId,a,b\n" + b"".join(
        rng.choice([b"%d,x,y\n" % i, b"%d,,\n" % i, b'%d,"q,r",z\r\n' % i, b",bad\n", b"\n"])
        for i in range(300)
    )
    small_chunks(37)
    monkeypatch.setattr(tuning, "READ_AHEAD", False)
    expected = snapshot(run(data, batch_max_rows=50))
    monkeypatch.setattr(tuning, "READ_AHEAD", True)
    assert snapshot(run(data, batch_max_rows=50)) == expected


def test_numpy_is_loaded_by_a_validation_not_by_importing_the_package():
    # Functions that only read results (finalize's report, outcomes) import profile_sync.validate:
    # their cold start must not pay for numpy.
    code = (
        "import sys, profile_sync.validate, profile_sync.outcomes, profile_sync.workflow.report\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
