"""profile-sync run --redrive: a job with stuck and vanished batches, re-driven in the same local
stack through the real ASL, handlers, moto and the Target emulator, ends with every row succeeded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from profile_sync_local.cli import main


def write(path: Path, rows: int) -> Path:
    lines = [f"CRM-{i:05d},gold,{i}.50,M%C3%BCnchen\n" for i in range(1, rows + 1)]
    path.write_text("thirdPartyId,tier,value,city\n" + "".join(lines))
    return path


def run(capsys, *args: str) -> tuple[int, dict]:
    code = main(["run", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_stuck_and_vanished_batches_re_driven_end_with_every_row_succeeded(tmp_path, capsys):
    source = write(tmp_path / "export.csv", 800)
    out = tmp_path / "out"
    code, result = run(
        capsys,
        str(source),
        "--client",
        "acme",
        "--set",
        "BATCH_MAX_ROWS=100",
        "--stuck-batches",
        "2",
        "--vanish-batches",
        "1",
        "--redrive",
        "--out",
        str(out),
    )
    # The first job: 2 batches stuck (their rows failed), 1 vanished (its rows pending).
    ends = [batch["status"] for batch in result["batches"]]
    assert sorted(ends) == ["COMPLETE"] * 5 + ["STUCK"] * 2 + ["VANISHED"]
    assert result["status"] == "COMPLETE_WITH_ERRORS"
    assert (result["received"], result["succeeded"], result["failed"], result["pending"]) == (
        800,
        500,
        200,
        100,
    )
    # The re-drive: exactly those 300 rows, as a new job linked to the first.
    redrive = result["redrive"]
    assert redrive["parent_job_id"] == result["jobId"] and redrive["automatic"] is False
    assert redrive["byOutcome"] == {"failed": 200, "pending": 100, "not_found": 0}
    assert (redrive["status"], redrive["received"], redrive["succeeded"]) == ("COMPLETE", 300, 300)
    assert redrive["key"].startswith(f"incoming/acme/redrive={result['jobId']}/api=v2/mode=encoded/")
    # Both together: every row of the file succeeded, and the exit code says so.
    combined = result["combined"]
    assert combined == {
        "status": "COMPLETE",
        "reason": None,
        "received": 800,
        "rejected": 0,
        "skipped": 0,
        "unchanged": 0,
        "succeeded": 800,
        "failed": 0,
        "not_found": 0,
        "pending": 0,
    }
    assert code == 0
    # The re-drive's rows are the first job's rows.csv rows, no more.
    with open(out / "rows.csv", newline="") as f:
        not_landed = [row for row in csv.DictReader(f)]
    assert len(not_landed) == 300 and {row["outcome"] for row in not_landed} == {"failed", "pending"}
    assert json.loads((out / "redrive" / "summary.json").read_text())["account"]["succeeded"] == 300
    assert result["lambda_invocations"]["Ingest"] == 2 and result["lambda_invocations"]["Finalize"] == 2
    assert result["target_calls"]["batchUpdate"] == {"200": 11}  # 8 batches, then 3: nothing sent twice
    assert result["redrive"]["duration_seconds"] > 0


def test_the_text_summary_shows_both_jobs_and_the_combined_outcome(tmp_path, capsys):
    source = write(tmp_path / "export.csv", 30)
    args = ["run", str(source), "--set", "BATCH_MAX_ROWS=10", "--vanish-batches", "1", "--redrive=pending"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "re-drive: 10 rows (pending 10) dropped as incoming/demo/redrive=" in text
    assert "combined: the file's rows after the re-drive: COMPLETE" in text
    assert text.index("re-drive job") < text.index("combined:")


def test_a_re_drive_that_does_not_land_either_exits_with_errors(tmp_path, capsys):
    # Every batch Target takes is stuck, the re-drive's too: the file's rows end failed.
    source = write(tmp_path / "export.csv", 20)
    code, result = run(capsys, str(source), "--stuck-share", "1", "--redrive", "--out", str(tmp_path / "o"))
    assert result["redrive"]["status"] == "COMPLETE_WITH_ERRORS"
    assert result["combined"]["status"] == "COMPLETE_WITH_ERRORS" and result["combined"]["failed"] == 20
    assert code == 1


def test_a_clean_job_has_nothing_to_re_drive(tmp_path, capsys):
    code, result = run(capsys, str(write(tmp_path / "x.csv", 5)), "--redrive", "--out", str(tmp_path / "o"))
    assert code == 0 and result["status"] == "COMPLETE" and "combined" not in result
    assert result["redrive"] == {"rows": 0, "skipped": "nothing re-driven: every row succeeded"}
    assert result["lambda_invocations"]["Ingest"] == 1


def test_the_automatic_re_drive_is_followed_in_the_same_run(tmp_path, capsys):
    source = write(tmp_path / "export.csv", 30)
    code, result = run(
        capsys,
        str(source),
        "--set",
        "BATCH_MAX_ROWS=10",
        "--set",
        "REDRIVE_PENDING_AUTO=1",
        "--vanish-batches",
        "1",
        "--out",
        str(tmp_path / "o"),
    )
    assert result["pending"] == 10 and result["redrive"]["automatic"] is True
    assert result["redrive"]["status"] == "COMPLETE" and result["redrive"]["succeeded"] == 10
    assert result["combined"]["succeeded"] == 30 and code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--redrive", "landed"], "--redrive takes failed, pending, not_found, not 'landed'"),
        (["--redrive", "--set", "REDRIVE_PENDING_AUTO=1"], "give one"),
        (["--target-url", "https://demo.tt.omtrdc.net", "--vanish-batches", "1"], "--vanish-batches"),
    ],
)
def test_bad_re_drive_options_run_nothing(tmp_path, capsys, extra, message):
    source = write(tmp_path / "x.csv", 2)
    assert main(["run", str(source), *extra, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_state_keeps_only_the_snapshot_files_not_deleted(tmp_path, capsys):
    """--state DIR mirrors the bucket's delta/ folder: files a merge deleted leave DIR too."""
    state = tmp_path / "state"
    common = ["--delta", "--state", str(state), "--set", "DELTA_PARTITIONS=4"]
    common += ["--set", "DELTA_CLEANUP_GRACE_SECONDS=0"]
    for day, tier in enumerate(("gold", "silver", "bronze")):
        source = tmp_path / f"day{day}.csv"
        rows = "".join(f"CRM-{i:05d},{tier}\n" for i in range(40))
        source.write_text("thirdPartyId,tier\n" + rows)
        code, result = run(capsys, str(source), *common, "--out", str(tmp_path / f"o{day}"))
        assert code == 0 and result["succeeded"] == 40
    # Day 1 wrote 4 files, day 2 replaced them (retired), day 3 replaced those and deleted day 1's.
    assert result["delta"]["deleted"] == 4
    files = sorted(p.relative_to(state / "objects").as_posix() for p in (state / "objects").rglob("*.gz"))
    assert len(files) == 8 and not [f for f in files if "/v00000001-" in f]
