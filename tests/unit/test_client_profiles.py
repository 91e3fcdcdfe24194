"""Client profiles: the schema, the engine's header rules after mapping, and the transcoding reader."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import profile_sync.client_profiles as cp
from profile_sync.adobe_target.ratelimit import InMemoryRateLimiter
from profile_sync.client_profiles import (
    AccountLimiter,
    AccountQuota,
    ProfileInvalid,
    StaticProfiles,
    parse_profile,
    validate_with_profile,
)
from profile_sync.settings import Settings
from profile_sync.validate import tuning, validate_and_split

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "local" / "samples"


def run(tmp_path: Path, data: bytes, document: dict | None, **settings) -> tuple:
    profile = parse_profile(document, "acme") if document is not None else None
    base = Settings(**settings)
    result = validate_with_profile(
        io.BytesIO(data),
        tmp_path,
        profile.settings(base) if profile else base,
        profile,
        source_name="drop.csv",
    )
    batches = "".join((tmp_path / b.name).read_text() for b in result.batches)
    rejects = list(csv.DictReader((tmp_path / "rejects.csv").open(encoding="utf-8")))
    return result, batches, rejects


SALESFORCE = {
    "id_column": {"source": "Contact ID", "type": "thirdPartyId"},
    "rename": {"Loyalty Tier": "loyaltyTier", "City": "city"},
    "drop": ["Email"],
    "constants": {"source": "crm"},
    "separator": ";",
    "encoding": "windows-1252",
    "input_mode": "raw",
}


# ------------------------------------------------------------------------------------- schema
def test_the_schema_file_is_a_valid_draft_7_schema_and_every_sample_profile_meets_it() -> None:
    schema = json.loads(cp.SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    profiles = sorted(SAMPLES.glob("*.profile.json"))
    assert len(profiles) >= 2
    for path in profiles:
        jsonschema.validate(json.loads(path.read_text()), schema)
        parse_profile(path.read_bytes(), "demo")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"separator": ":"}, "separator must be one of"),
        ({"encoding": "ebcdic"}, "encoding must be one of"),
        ({"id_column": {"source": "Id"}}, "id_column must contain ['type']"),
        ({"id_column": {"source": "Id", "type": "ecid"}}, "id_column.type must be one of"),
        ({"daily_row_quota": -1}, "daily_row_quota must be bigger than or equal to 0"),
        ({"colour": "red"}, "must not contain {'colour'} properties"),
        ({"account": "a b"}, "account must match pattern"),
    ],
)
def test_the_schema_refuses_with_the_field_named(document: dict, message: str) -> None:
    with pytest.raises(ProfileInvalid) as refused:
        parse_profile(document, "acme")
    assert message in str(refused.value)


def test_not_json_and_too_large_are_refused() -> None:
    with pytest.raises(ProfileInvalid, match="not valid JSON"):
        parse_profile(b"{", "acme")
    with pytest.raises(ProfileInvalid, match="at most 4096 fit"):
        parse_profile(
            json.dumps(
                {"description": "x" * 400, "rename": {f"c{i}": "y" * 10 for i in range(300)}}
            ).encode(),
            "acme",
        )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        # The engine's header rules, after mapping: same words a dropped file would get.
        ({"rename": {"Loyalty Tier": "loyalty tier"}}, "column 2 name is not URL-encoded: raw space"),
        ({"rename": {"A": "tier", "B": "tier"}}, "column name 'tier' appears more than once"),
        ({"rename": {"A": "pcId"}}, "column name 'pcId' appears more than once"),
        ({"rename": {"A": ""}}, "rename.A must be longer than or equal to 1"),
        ({"constants": {"source": "a b"}}, "a row with them would be rejected: invalid_encoding"),
        ({"constants": {"x": "1"}, "rename": {"A": "x"}}, "column name 'x' appears more than once"),
        (
            {"id_column": {"source": "Id", "type": "pcId"}, "rename": {"Id": "visitor"}},
            "'Id' is the id column",
        ),
        ({"id_column": {"source": "Id", "type": "pcId"}, "drop": ["Id"]}, "cannot be dropped"),
        ({"rename": {"A": "a"}, "drop": ["A"]}, "'A' is both renamed and dropped"),
    ],
)
def test_a_profile_whose_mapped_header_the_engine_refuses_is_refused(document: dict, message: str) -> None:
    with pytest.raises(ProfileInvalid) as refused:
        parse_profile(document, "acme")
    assert message in str(refused.value)


def test_raw_mode_profiles_may_name_attributes_with_spaces_because_the_engine_encodes_them() -> None:
    profile = parse_profile({"rename": {"A": "loyalty tier"}, "input_mode": "raw"}, "acme")
    assert profile.settings(Settings()).input_mode == "raw"


def test_profile_settings_override_only_what_the_profile_sets() -> None:
    base = Settings(calls_per_minute=50, token_secret_id="stack")
    profile = parse_profile({"token_secret_id": "acme/token", "daily_row_quota": 10}, "acme")
    own = profile.settings(base)
    assert (own.token_secret_id, own.daily_row_quota, own.calls_per_minute) == ("acme/token", 10, 50)
    assert profile.account == "acme"
    assert parse_profile({"account": "agency"}, "acme").account == "agency"


# ------------------------------------------------------------------------------------- transcoding
def test_a_windows_1252_semicolon_export_is_mapped_reencoded_and_requoted(tmp_path: Path) -> None:
    text = (
        "Email;Contact ID;Loyalty Tier;City\r\n"
        "a@x.com;003A;Gold;Zürich, Altstadt\r\n"  # a comma inside an unquoted ; field
        '"b@x.com";003B;"Sil;ver";"São\r\nPaulo"\r\n'  # ; inside quotes, a newline inside quotes
        "c@x.com;003C;Bronze\r\n"  # short row: missing values are empty
    )
    result, batches, rejects = run(tmp_path, text.encode("cp1252"), SALESFORCE)
    assert result.file_error is None, result.file_error
    assert (result.received, result.accepted, result.rejected) == (3, 3, 0)
    assert batches == (
        "batch=thirdPartyId,loyaltyTier,city,source\n"
        "003A,Gold,Z%C3%BCrich%2C%20Altstadt,crm\n"
        "003B,Sil%3Bver,S%C3%A3o%0APaulo,crm\n"
        "003C,Bronze,,crm\n"
    )
    assert rejects == []
    # Line numbers stay the source file's: the third row starts on line 5 (line 3 spans two).
    assert result.batches[0].line_runs == [[0, 2], [2, 5]]


def test_encoded_mode_commas_inside_quoted_fields_become_percent_2c_as_the_engine_writes_them(
    tmp_path: Path,
) -> None:
    document = {"separator": "|", "encoding": "iso-8859-1"}
    data = 'pcId|tier|note\n1|gold|a,b\n2|x"y|\n'.encode("latin-1")
    result, batches, _ = run(tmp_path, data, document)
    assert batches == "batch=pcId,tier,note\n1,gold,a%2Cb\n2,x%22y,\n"
    assert result.accepted == 2


def test_utf16_tab_excel_export_with_bom(tmp_path: Path) -> None:
    document = {
        "id_column": {"source": "Customer", "type": "pcId"},
        "separator": "tab",
        "encoding": "utf-16",
        "input_mode": "raw",
    }
    text = 'Customer\tSegment\r\n42\tÉlite ✓\r\n43\t"a\tb"\r\n'
    for codec in ("utf-16", "utf-16-be"):
        data = text.encode(codec) if codec == "utf-16" else b"\xfe\xff" + text.encode(codec)
        _result, batches, _ = run(tmp_path / codec, data, document)
        assert batches == "batch=pcId,Segment\n42,%C3%89lite%20%E2%9C%93\n43,a%09b\n", codec


def test_utf16_without_a_bom_rejects_the_file_with_what_to_do(tmp_path: Path) -> None:
    document = {"separator": "\t", "encoding": "utf-16"}
    result, _, _ = run(tmp_path, "pcId\ta\n1\tb\n".encode("utf-16-le"), document)
    assert "does not start with a UTF-16 byte-order mark" in result.file_error
    assert result.batches == []


@pytest.mark.parametrize(
    ("encoding", "data", "reason", "byte"),
    [
        ("windows-1252", b"pcId;a\n1;ok\n2;bad\x81\n3;ok\n", "invalid_text_encoding", "0x81"),
        ("utf-8", b"pcId;a\n1;ok\n2;bad\xc3\x28\n3;ok\n", "invalid_utf8", "0xC3"),
        (
            "utf-16",
            "pcId;a\n1;ok\n".encode("utf-16") + b"\x00\xd8A\x00\n\x00" + "3;ok\n".encode("utf-16-le"),
            "invalid_text_encoding",
            "0x00",
        ),
    ],
)
def test_a_byte_invalid_in_the_declared_encoding_rejects_its_row_with_its_line(
    tmp_path: Path, encoding: str, data: bytes, reason: str, byte: str
) -> None:
    result, batches, rejects = run(tmp_path, data, {"separator": ";", "encoding": encoding})
    assert (result.received, result.accepted, result.rejected) == (3, 2, 1)
    assert result.reasons == {reason: 1}
    assert [(r["line"], r["reason"]) for r in rejects] == [("3", reason)]
    assert byte in rejects[0]["detail"] and encoding in rejects[0]["detail"]
    assert batches == "batch=pcId,a\n1,ok\n3,ok\n"
    assert result.batches[0].line_runs == [[0, 2], [1, 4]]


def test_quoting_errors_and_extra_fields_are_rejected_in_the_source_dialect(tmp_path: Path) -> None:
    data = b'pcId;a\n1;"x"y\n2;a;b\n3;ok\n4;"never closed\n'
    result, batches, rejects = run(tmp_path, data, {"separator": ";"})
    assert [(r["line"], r["reason"]) for r in rejects] == [
        ("2", "invalid_quoting"),
        ("3", "too_many_fields"),
        ("5", "invalid_quoting"),
    ]
    assert batches == "batch=pcId,a\n3,ok\n"
    assert (result.received, result.accepted, result.rejected) == (4, 1, 3)


def test_missing_id_column_rejects_the_file_and_hints_at_case(tmp_path: Path) -> None:
    document = {"id_column": {"source": "Contact ID", "type": "thirdPartyId"}, "separator": ";"}
    result, _, _ = run(tmp_path, b"contact id;a\n1;b\n", document)
    assert "id column 'Contact ID' is not in the file's header" in result.file_error
    assert "(the file has 'contact id'" in result.file_error
    result, _, _ = run(tmp_path, b"Contact ID,a\n1,b\n", document)  # wrong separator
    assert "check the profile's id_column.source and separator" in result.file_error


def test_the_engine_checks_the_mapped_header_of_the_actual_file(tmp_path: Path) -> None:
    # An unmapped column keeps its name; in encoded mode a space in it is the engine's refusal.
    result, _, _ = run(tmp_path, b"pcId;First Name\n1;a\n", {"separator": ";"})
    assert "column 2 name is not URL-encoded: raw space" in result.file_error


def test_columns_the_profile_names_but_the_file_lacks_are_a_warning(tmp_path: Path) -> None:
    result, _, _ = run(tmp_path, b"pcId;a\n1;b\n", {"separator": ";", "rename": {"Tier": "tier"}})
    assert any("the profile names columns the file does not have: Tier" in w for w in result.warnings)


def test_renames_only_on_a_utf8_comma_file_pass_the_rows_through_untouched(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbfpcId,tier\n1,gold\n\n2,bad\xff\n3,x%2\n"
    result, batches, rejects = run(tmp_path / "p", data, {"rename": {"tier": "loyalty"}})
    plain, plain_batches, plain_rejects = run(tmp_path / "n", data.replace(b"tier", b"loyalty"), None)
    assert batches == plain_batches == "batch=pcId,loyalty\n1,gold\n"
    assert [(r["line"], r["reason"]) for r in rejects] == [(r["line"], r["reason"]) for r in plain_rejects]
    assert rejects[0]["line"] == "4" and rejects[0]["reason"] == "invalid_utf8"
    assert result.reasons == plain.reasons


def test_without_a_profile_or_with_a_budget_only_profile_the_engine_reads_the_drop_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (SAMPLES / "visitors.csv").read_bytes()
    monkeypatch.setattr(cp, "ProfileReader", lambda *a, **k: pytest.fail("no reader without mapping"))
    budget = {"token_secret_id": "acme/token", "daily_row_quota": 5}
    for name, document in (("none", None), ("budget", budget)):
        _, batches, _rejects = run(tmp_path / name, data, document)
        plain = validate_and_split(io.BytesIO(data), tmp_path / f"{name}-plain", Settings())
        assert batches == "".join((tmp_path / f"{name}-plain" / b.name).read_text() for b in plain.batches)


def test_many_blocks_and_chunks_keep_every_line_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cp, "_BLOCK_ROWS", 7)
    lines = ["pcId;v"]
    for i in range(1, 200):
        lines.append(f"{i};\x81" if i % 37 == 0 else f"{i};v{i}")
    data = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    result, batches, rejects = run(tmp_path, data, {"separator": ";", "encoding": "windows-1252"})
    bad = [i for i in range(1, 200) if i % 37 == 0]
    assert [int(r["line"]) for r in rejects] == [i + 1 for i in bad]
    assert result.accepted == 199 - len(bad)
    assert all(batch.source_line(0) == 2 for batch in result.batches[:1])
    sent = batches.splitlines()[1:]
    assert sent[0] == "1,v1" and "37," not in "\n".join(s[:3] for s in sent)


class _CountingStream(io.RawIOBase):
    """A long source that records how far it has been read."""

    def __init__(self, rows: int) -> None:
        self.header = "pcId;v\r\n".encode("cp1252")
        self.rows, self.sent, self.bytes_read = rows, 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.header and self.sent < self.rows:
            count = min(10_000, self.rows - self.sent)
            self.header = b"".join(b"%d;value-%d\r\n" % (self.sent + i, i) for i in range(count))
            self.sent += count
        data, self.header = self.header[: len(buffer)], self.header[len(buffer) :]
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


def test_the_reader_streams_batches_leave_before_the_source_is_read_through(tmp_path: Path) -> None:
    source = _CountingStream(600_000)
    profile = parse_profile({"separator": ";", "encoding": "windows-1252"}, "acme")
    read_at_first_batch = []
    settings = Settings(batch_max_rows=100_000)
    result = validate_with_profile(
        source, tmp_path, settings, profile, on_batch=lambda b: read_at_first_batch.append(source.bytes_read)
    )
    assert result.accepted == 600_000 and len(result.batches) == 6
    # The engine reads one chunk ahead in a thread (validate.engine.read_ahead): that much more.
    assert read_at_first_batch[0] < source.bytes_read / 3 + tuning.CHUNK_SIZE


# ------------------------------------------------------------------------------------- budgets
def test_clients_naming_one_account_share_its_calls_per_minute() -> None:
    inner = InMemoryRateLimiter(2, clock=lambda: 1000.0)
    a, b = AccountLimiter(inner, "agency"), AccountLimiter(inner, "agency")
    other = AccountLimiter(inner, "solo")
    assert a.try_acquire("client-a") == 0.0
    assert b.try_acquire("client-b") == 0.0
    assert a.try_acquire("client-a") > 0  # the account's 2 calls are spent, whoever made them
    assert other.try_acquire("client-c") == 0.0


class _Quota:
    def __init__(self, limit: int) -> None:
        self.limit, self.calls = limit, []

    def reserve(self, key, reservation_id, rows, now):
        self.calls.append((self.limit, key, rows))
        return key


def test_daily_quota_is_counted_per_account_with_the_profiles_limit() -> None:
    profiles = StaticProfiles(
        {
            "a": parse_profile({"account": "agency", "daily_row_quota": 100}, "a"),
            "b": parse_profile({"account": "agency", "daily_row_quota": 100}, "b"),
            "c": parse_profile({"token_secret_id": "c/token"}, "c"),
        }
    )
    default = _Quota(1_000_000)
    made: dict[int, _Quota] = {}
    quota = AccountQuota(
        profiles, default, lambda limit: made.setdefault(limit, _Quota(limit)), "daily_row_quota"
    )
    for client in ("a", "b", "c", "nobody"):
        quota.reserve(client, "r", 5, 0.0)
    assert made[100].calls == [(100, "agency", 5), (100, "agency", 5)]
    # A profile without a quota, and a client without a profile: the stack's limit, as before.
    assert default.calls == [(1_000_000, "c", 5), (1_000_000, "nobody", 5)]


def test_rows_the_profile_reader_rejects_stay_within_the_rejects_bounds(tmp_path: Path) -> None:
    # Issue 11: REJECTS_MAX_ROWS counts every listed row, the engine's and the reader's; each line cut.
    bad = b";x" + b"\x81" * 3000  # windows-1252 has no 0x81: the reader rejects the row
    data = b"pcId;a\n1;50%\n" + b"".join(b"%d" % i + bad + b"\n" for i in range(2, 7)) + b"9;ok\n"
    profile = {"separator": ";", "encoding": "windows-1252"}
    result, _, rejects = run(tmp_path, data, profile, rejects_max_rows=3, rejects_original_max_bytes=100)
    assert (result.rejected, result.rejected_unlisted, result.accepted) == (6, 3, 1)
    assert result.reasons == {"invalid_encoding": 1, "invalid_text_encoding": 5}
    assert [r["line"] for r in rejects] == ["2", "3", "4"]
    assert all(len(r["original"].encode()) < 130 and "…[cut: " in r["original"] for r in rejects[1:])
    assert [w for w in result.warnings if "REJECTS_MAX_ROWS" in w] == [
        "drop.csv: rejects.csv lists the first 3 rejected rows; 3 more are counted by reason but not "
        "listed (REJECTS_MAX_ROWS)"
    ]


def test_a_line_break_inside_a_dropped_column_keeps_the_next_rows_line_numbers(tmp_path: Path) -> None:
    data = b'pcId;note;tier\n1;"two\r\nlines";gold\n2;x;silv/er\n3;"a\nb\nc";\n4;y;ok\n'
    document = {"separator": ";", "drop": ["note"], "input_mode": "encoded"}
    result, batches, rejects = run(tmp_path, data, document)
    assert batches == "batch=pcId,tier\n1,gold\n2,silv/er\n4,ok\n"
    assert result.skipped == 1  # row 3 has no value left once its note is dropped
    assert [b.source_line(i) for b in result.batches for i in range(b.rows)] == [2, 4, 8]
    assert rejects == []


def test_a_file_of_bad_rows_is_counted_without_holding_its_rejects_in_memory(tmp_path: Path) -> None:
    import tracemalloc  # noqa: PLC0415

    rows = 40_000
    data = b"pcId;a\n" + b"".join(b"%d;bad\x81%s\n" % (i, b"x" * 500) for i in range(rows))
    profile = parse_profile({"separator": ";", "encoding": "windows-1252"}, "acme")
    tracemalloc.start()
    try:
        result = validate_with_profile(
            io.BytesIO(data), tmp_path, Settings(rejects_max_rows=0), profile, source_name="bad.csv"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.received, result.rejected, result.accepted) == (rows, rows, 0)
    assert result.reasons == {"invalid_text_encoding": rows}
    # Every reject listed (no cap), yet the peak stays a few MB over the input's own copy.
    assert sum(1 for _ in (tmp_path / "rejects.csv").open(encoding="utf-8")) == rows + 1
    assert peak < len(data) + 16 * 2**20, peak


@pytest.mark.parametrize("read_size", [7, 64, 1 << 20])
def test_plain_blocks_replaced_in_one_go_give_what_the_csv_path_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_size: int
) -> None:
    import random  # noqa: PLC0415

    rng = random.Random(read_size)
    cells = ["a", "b c", "x,y", 'say "hi"', "", "Zürich", "multi\nline", "é" * 3, "t\tab", "50%", " pad "]
    lines = ["pcId;v;w"]
    for i in range(400):
        kind = rng.random()
        if kind < 0.05:
            lines.append("")
        elif kind < 0.08:
            lines.append(f"{i};one;two;three")
        elif kind < 0.10:
            lines.append(f'{i};"open;x')
        else:
            row = [str(i), rng.choice(cells), rng.choice(cells)]
            lines.append(
                ";".join(f'"{c.replace(chr(34), chr(34) * 2)}"' if set(c) & set(';"\n') else c for c in row)
            )
    data = ("\r\n".join(lines) + "\r\n").encode("cp1252").replace(b"t\tab", b"t\x81ab")
    monkeypatch.setattr(cp, "_READ_SIZE", read_size)
    document = {"separator": ";", "encoding": "windows-1252", "input_mode": "raw"}
    fast = run(tmp_path / "fast", data, document)
    monkeypatch.setattr(cp, "_FAST_REDELIMIT", False)
    slow = run(tmp_path / "slow", data, document)
    assert fast[1] == slow[1]
    # The same rejects; the engine lists the ones it finds first, the reader's come after.
    assert sorted((int(r["line"]), r["reason"]) for r in fast[2]) == sorted(
        (int(r["line"]), r["reason"]) for r in slow[2]
    )
    assert fast[0].to_dict() | {"batches": None, "rejects_path": None} == slow[0].to_dict() | {
        "batches": None,
        "rejects_path": None,
    }
    assert [b.line_runs for b in fast[0].batches] == [b.line_runs for b in slow[0].batches]
    assert fast[0].rejected > 10 and fast[0].accepted > 250


def test_utf8_with_a_bom_and_semicolons(tmp_path: Path) -> None:
    data = "\ufeffKunde;Stufe\r\n1;Grün\r\n".encode()
    document = {"id_column": {"source": "Kunde", "type": "pcId"}, "separator": ";", "input_mode": "raw"}
    result, batches, _ = run(tmp_path, data, document)
    assert batches == "batch=pcId,Stufe\n1,Gr%C3%BCn\n"
    assert result.accepted == 1


def test_reading_a_profile_checks_it_by_the_engines_rules_without_loading_numpy():
    # ReserveQuota, SubmitBatch, PollBatch and SingleUpdate read client profiles: their cold start
    # must not pay for the ingest engine's numpy (about 0.1 s), yet a bad profile is still refused.
    sample = Path(__file__).parents[2] / "local" / "samples" / "salesforce_contacts_eu.profile.json"
    code = (
        "import json, sys\n"
        "from profile_sync.client_profiles import ProfileInvalid, parse_profile\n"
        f"document = json.loads(open({str(sample)!r}).read())\n"
        "parse_profile(document, 'acme')\n"
        "document['input_mode'] = 'encoded'\n"
        "document['constants'] = {'source': 'a b'}\n"
        "try:\n"
        "    parse_profile(document, 'acme')\n"
        "except ProfileInvalid as exc:\n"
        "    print(exc.problems)\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "constants: a row with them would be rejected: invalid_encoding: " in done.stdout
