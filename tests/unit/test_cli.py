"""profile-sync validate: the same engine offline, a human summary or one JSON object, exit codes."""

from __future__ import annotations

import gzip
import json

from profile_sync_local.cli import EXIT_FILE_REJECTED, EXIT_OK, EXIT_ROWS_REJECTED, main
from profile_sync_local.local_stack import ROOT

SAMPLE = ROOT / "local" / "samples" / "visitors.csv"


def test_validate_json_reports_the_row_account_and_batches(tmp_path, capsys):
    assert main(["validate", str(SAMPLE), "--out", str(tmp_path), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert (report["received"], report["accepted"], report["rejected"], report["skipped"]) == (16, 10, 5, 1)
    assert report["duplicate_ids"] == 1
    assert report["reasons"] == {
        "empty_id": 1,
        "too_many_fields": 1,
        "invalid_encoding": 2,
        "invalid_third_party_id": 1,
    }
    assert [(b["rows"], b["bytes"]) for b in report["batches"]] == [
        (10, (tmp_path / "batch-00001.txt").stat().st_size)
    ]
    assert report["file_error"] is None
    assert (tmp_path / "rejects.csv").read_text().count("\n") == 1 + 5


def test_validate_human_summary_names_the_rejects_file(tmp_path, capsys):
    assert main(["validate", str(SAMPLE), "--out", str(tmp_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "16 rows received" in out
    assert "invalid_encoding: 2" in out
    assert str(tmp_path / "rejects.csv") in out


def test_strict_exits_1_when_rows_were_rejected(tmp_path):
    assert main(["validate", str(SAMPLE), "--out", str(tmp_path), "--strict"]) == EXIT_ROWS_REJECTED


def test_a_rejected_file_exits_2_with_the_reason_in_json(tmp_path, capsys):
    bad = tmp_path / "ecid.csv"
    bad.write_text("ECID,tier\n1,gold\n")
    assert main(["validate", str(bad), "--out", str(tmp_path / "out"), "--json"]) == EXIT_FILE_REJECTED
    report = json.loads(capsys.readouterr().out)
    assert "pcId or thirdPartyId" in report["file_error"]


def test_gzip_raw_mode_and_limits_from_the_command_line(tmp_path, capsys):
    source = tmp_path / "crm.csv.gz"
    source.write_bytes(gzip.compress("pcId,city\n1,Köln\n2,Bonn\n3,Essen\n".encode()))
    code = main(
        [
            "validate",
            str(source),
            "--out",
            str(tmp_path / "out"),
            "--input-mode",
            "raw",
            "--batch-max-rows",
            "2",
            "--json",
        ]
    )
    assert code == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert [b["rows"] for b in report["batches"]] == [2, 1]
    assert (tmp_path / "out" / "batch-00001.txt").read_text() == "batch=pcId,city\n1,K%C3%B6ln\n2,Bonn\n"


def test_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]) == EXIT_FILE_REJECTED
    assert "no such file" in capsys.readouterr().err


def test_validate_applies_the_file_maximum_to_the_decompressed_bytes(tmp_path, capsys):
    # As the ingest: a small .gz that inflates past the maximum is rejected (before: validated).
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"pcId,a\n" + b"1,x\n" * 10_000))
    assert bomb.stat().st_size < 4096
    args = ["validate", str(bomb), "--out", str(tmp_path / "out"), "--file-max-bytes", "4096"]
    assert main(args) == EXIT_FILE_REJECTED
    err = capsys.readouterr().err
    assert "larger than the configured maximum of 4,096 bytes" in err
    assert "FILE_MAX_BYTES" in err
    assert main([*args[:-2], "--file-max-bytes", "0"]) == EXIT_OK
