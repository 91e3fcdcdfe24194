"""profile-sync run: the whole pipeline on one machine, as a new user meets it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from profile_sync_local.cli import main
from profile_sync_local.local_stack import ROOT

SAMPLE = ROOT / "local" / "samples" / "visitors.csv"


def test_the_sample_runs_end_to_end_with_its_bad_rows_reported_by_line(tmp_path, capsys):
    code = main(["run", str(SAMPLE), "--out", str(tmp_path), "--json"])

    result = json.loads(capsys.readouterr().out)
    assert code == 1  # COMPLETE_WITH_ERRORS: the sample has bad rows on purpose
    assert result["status"] == "COMPLETE_WITH_ERRORS"
    account = [
        result[k] for k in ("received", "rejected", "skipped", "succeeded", "failed", "not_found", "pending")
    ]
    assert account == [16, 5, 1, 10, 0, 0, 0]
    assert result["target_calls"]["batchUpdate.v2"] == 1
    assert result["simulated_seconds"] > 0
    rows = list(csv.DictReader(io.StringIO(Path(result["files"]["rows"]).read_text())))
    assert [(r["line"], r["outcome"]) for r in rows] == [
        ("8", "rejected"),
        ("9", "rejected"),
        ("10", "rejected"),
        ("12", "rejected"),
        ("13", "rejected"),
    ]
    summary = json.loads(Path(result["files"]["summary"]).read_text())
    assert summary["account"]["succeeded"] == 10
    # The handlers' logs went to the log file, never a profile value in it.
    log = Path(result["files"]["log"]).read_text()
    assert "batch ended" in log
    assert "M%C3%BCnchen" not in log and "CRM-100001" not in log


def test_failing_rows_from_the_emulator_are_counted_and_listed(tmp_path, capsys):
    source = tmp_path / "clean.csv"
    source.write_text("pcId,tier\n" + "".join(f"{i},gold\n" for i in range(1, 201)))

    code = main(["run", str(source), "--out", str(tmp_path / "out"), "--fail-share", "0.1", "--json"])

    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["failed"] > 0
    assert result["succeeded"] + result["failed"] == 200
    rows = list(csv.DictReader(io.StringIO(Path(result["files"]["rows"]).read_text())))
    assert len(rows) == result["failed"]
    assert all(r["outcome"] == "failed" and int(r["line"]) == int(r["id"]) + 1 for r in rows)


def test_oauth_auth_mints_tokens_through_the_emulator(tmp_path, capsys):
    code = main(["run", str(SAMPLE), "--out", str(tmp_path), "--auth", "oauth", "--json"])

    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["succeeded"] == 10
    assert result["target_calls"]["ims"] == 1  # one IMS token, one profile token, for every call
    assert result["target_calls"]["token"] == 1


def test_stuck_batches_and_throttling_from_the_command_line(tmp_path, capsys):
    source = tmp_path / "clean.csv"
    source.write_text("pcId,tier\n" + "".join(f"{i},gold\n" for i in range(1, 31)))
    switches = ["--stuck-share", "1", "--throttle-per-minute", "2", "--json"]

    code = main(["run", str(source), "--out", str(tmp_path / "out"), *switches])

    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["status"] == "COMPLETE_WITH_ERRORS"
    assert result["failed"] == 30  # a stuck batch will not complete: its rows failed, with the reason
    assert [b["status"] for b in result["batches"]] == ["STUCK"]
    rows = list(csv.DictReader(io.StringIO(Path(result["files"]["rows"]).read_text())))
    assert {r["reason"] for r in rows} == {"Target reported the batch stuck: it will not complete"}
