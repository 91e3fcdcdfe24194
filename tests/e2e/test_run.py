"""profile-sync run: the whole pipeline on one machine, as a new user meets it."""

from __future__ import annotations

import csv
import io
import json
import logging
import secrets
from pathlib import Path

import pytest

from profile_sync_local import emulator as emulator_module
from profile_sync_local.cli import main
from profile_sync_local.emulator import EmulatorConfig, TargetEmulator
from profile_sync_local.stack.project import ROOT

SAMPLE = ROOT / "local" / "samples" / "visitors.csv"
# One batch, two "incomplete" answers, then complete: the states each child execution enters.
ONE_BATCH_STATES = {
    "ChooseApi": 1,
    "ReserveQuota": 1,
    "QuotaGranted?": 1,
    "SubmitBatch": 1,
    "Submitted?": 1,
    "WaitBeforePoll": 3,
    "PollStatus": 3,
    "Finished?": 3,
    "BatchDone": 1,
}


def clean_file(path: Path, rows: int) -> Path:
    path.write_text("thirdPartyId,tier\n" + "".join(f"CRM-{i},gold\n" for i in range(1, rows + 1)))
    return path


@pytest.fixture
def target():
    """A Target emulator started on its own, as a user runs `profile-sync emulator`: real time."""
    with TargetEmulator(EmulatorConfig(seed=1, polls_until_complete=2)) as emulator:
        yield emulator


@pytest.fixture
def authorization_headers(monkeypatch):
    """The Authorization header of every profile API call the emulator checked."""
    seen: list[str] = []
    original = emulator_module._Handler._authorized

    def recording(handler, cfg):
        seen.append(handler.headers.get("Authorization", ""))
        return original(handler, cfg)

    monkeypatch.setattr(emulator_module._Handler, "_authorized", recording)
    return seen


# The AWS SDK's own DEBUG lines print request bodies (the secret as stored in Secrets Manager): off
# unless someone debugs the SDK itself, and never written by the run.
SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


def everything_written(out: Path, captured, caplog) -> str:
    """Every output file, stdout, stderr, and every log record at any level but the SDK's."""
    files = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    logs = "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records if not r.name.startswith(SDK_LOGGERS)
    )
    return files + captured.out + captured.err + logs


def test_the_sample_runs_end_to_end_with_its_bad_rows_reported_by_line(tmp_path, capsys):
    code = main(["run", str(SAMPLE), "--out", str(tmp_path), "--json"])

    result = json.loads(capsys.readouterr().out)
    assert code == 1  # COMPLETE_WITH_ERRORS: the sample has bad rows on purpose
    assert result["status"] == "COMPLETE_WITH_ERRORS"
    account = [
        result[k] for k in ("received", "rejected", "skipped", "succeeded", "failed", "not_found", "pending")
    ]
    assert account == [16, 5, 1, 10, 0, 0, 0]
    assert result["clock"] == "virtual"  # the built-in emulator: no real waiting
    assert result["simulated_seconds"] > 0
    # What it spent: every state the parent and the child execution entered, each Lambda call,
    # each Target call by endpoint and answer.
    # The landing check after Finalize (on by default, 20 sampled rows: all 10 succeeded ones here,
    # 9 profiles: CRM-100002 was sent twice) adds 7 parent states: StartLandingCheck, CheckLanding?,
    # then CheckLanding + Landed? twice (draw the sample; read after the Wait) and the Wait;
    # 2 LandingCheck invocations; 9 fetches.
    assert result["state_transitions"] == {
        "total": 10 + 1 + sum(ONE_BATCH_STATES.values()),
        "parent": 10,  # SendBatches, Finalize, the check's 7, Done
        "child_executions": 1,
        "child_states": sum(ONE_BATCH_STATES.values()),
    }
    assert result["lambda_invocations"] == {
        "Ingest": 1,
        "ReserveQuota": 1,
        "SubmitBatch": 1,
        "PollBatch": 3,
        "Finalize": 1,
        "LandingCheck": 2,
    }
    assert result["target_calls"] == {
        "batchUpdate": {"200": 1},
        "batchStatus": {"200": 3},
        "profiles": {"200": 9},
    }
    assert result["landing_check"] == {
        "status": "DONE",
        "sampled": 9,
        "eligible": 10,
        "verified": 9,
        "mismatched": 0,
        "notVisible": 0,
        "unchecked": 0,
        "rounds": 1,
    }
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


def test_the_files_warnings_are_printed_with_the_result(tmp_path, capsys):
    # A repeated id is sent (Target keeps one of the two updates): the person running the job must
    # see why the profile may not hold the value of the file's last row.
    source = tmp_path / "repeats.csv"
    source.write_text("pcId,tier\n1,gold\n2,silver\n1,bronze\n")

    code = main(["run", str(source), "--out", str(tmp_path / "out")])

    printed = capsys.readouterr().out
    assert code == 0
    assert "COMPLETE" in printed
    assert (
        "  warning: incoming/demo/repeats.csv: 1 row repeats an id from an earlier row; "
        "Target's updates of one id override each other, and batches may be applied in any order\n"
    ) in printed
    assert "bronze" not in printed  # the warning names no value


def test_a_header_only_file_completes_with_a_warning_that_nothing_was_sent(tmp_path, capsys):
    source = tmp_path / "empty-export.csv"
    source.write_text("pcId,tier\n")

    code = main(["run", str(source), "--out", str(tmp_path / "out"), "--json"])

    result = json.loads(capsys.readouterr().out)
    assert (code, result["status"], result["received"]) == (0, "COMPLETE", 0)
    assert result["target_calls"] == {}
    assert result["warnings"] == [
        "incoming/demo/empty-export.csv: the file has a header and no rows: nothing to send; "
        "check that the export is complete"
    ]


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


def test_rows_target_counted_without_naming_them_are_explained_in_the_summary(tmp_path, capsys):
    # v1's status counts the profiles it did not find without naming them: rows.csv can't list
    # them by line, so the printed summary and --json must carry each batch's reason (before: the
    # summary said "not_found 30" with an empty rows.csv and no reason anywhere on screen).
    source = clean_file(tmp_path / "clean.csv", 30)

    code = main(["run", str(source), "--out", str(tmp_path / "out"), "--api", "v1"])

    out = capsys.readouterr().out
    assert code == 1
    assert "not_found          30" in out
    reason = "Target counted 30 row(s) of this batch it found no profile for without naming them"
    assert f"batch 1: 30 rows, COMPLETE, 3 status polls: {reason}" in out
    assert main(["run", str(source), "--out", str(tmp_path / "json"), "--api", "v1", "--json"]) == 1
    assert [b["reason"] for b in json.loads(capsys.readouterr().out)["batches"]] == [reason]


def test_oauth_auth_mints_tokens_through_the_emulator(tmp_path, capsys):
    code = main(["run", str(SAMPLE), "--out", str(tmp_path), "--auth", "oauth", "--json"])

    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["succeeded"] == 10
    # One IMS token, one profile token, for every call.
    assert result["target_calls"]["ims"] == {"200": 1}
    assert result["target_calls"]["token"] == {"200": 1}


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


def test_the_summary_names_what_the_run_spent(tmp_path, capsys):
    code = main(["run", str(SAMPLE), "--out", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 1
    # The landing check after the job: 7 more parent states, 2 invocations, 9 profile fetches (the
    # 10 succeeded rows hold 9 ids).
    assert "state transitions 26 (parent 10; child executions started 1; in the child executions 15)" in out
    assert (
        "Lambda invocations 9 (Ingest 1, ReserveQuota 1, SubmitBatch 1, PollBatch 3, Finalize 1, "
        "LandingCheck 2)" in out
    )
    assert "Target calls 13 (batchUpdate 200 x1; batchStatus 200 x3; profiles 200 x9)" in out
    assert "  landed: 9 of 9 sampled profiles verified, 0 mismatched, 0 not yet visible, 0 unchecked" in out
    # Polls at 60, 120 and 180 s; the landing check reads LANDING_CHECK_DELAY_SECONDS (300) later.
    assert "would have taken 0h 08m 00s" in out


def test_retries_count_as_transitions_and_every_answer_is_counted(tmp_path, capsys, target):
    """Target answers 503 twice to the upload: the state machine retries SubmitBatch twice."""
    target.queue_faults("batchUpdate", "503", "503")
    source = clean_file(tmp_path / "ten.csv", 10)
    options = ["--target-url", target.url, "--clock", "virtual", "--set", "HTTP_MAX_ATTEMPTS=1", "--json"]

    code = main(["run", str(source), "--out", str(tmp_path / "out"), *options])

    result = json.loads(capsys.readouterr().out)
    assert code == 0, result["reason"]
    assert result["succeeded"] == 10
    assert result["target_calls"] == {
        "batchUpdate": {"200": 1, "503": 2},
        "batchStatus": {"200": 3},
        "profiles": {"200": 10},  # the landing check reads the 10 profiles back
    }
    # What the client saw is what Target received.
    assert target.calls["batchUpdate"] == 3 and target.calls["batchStatus"] == 3
    assert result["lambda_invocations"]["SubmitBatch"] == 3
    child_states = sum(ONE_BATCH_STATES.values()) + 2  # each retry is billed as a transition
    assert result["state_transitions"] == {
        "total": 10 + 1 + child_states,
        "parent": 10,  # SendBatches, Finalize, the landing check's 7 states, Done
        "child_executions": 1,
        "child_states": child_states,
    }


def test_a_token_from_the_environment_reaches_the_target_as_a_bearer_token(
    tmp_path, capsys, caplog, monkeypatch, target, authorization_headers
):
    token = f"env-token-{secrets.token_hex(12)}"
    target.configure(require_auth=True, valid_tokens={token})
    monkeypatch.setenv("PROFILE_SYNC_TARGET_TOKEN", token)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"

    code = main(["run", str(SAMPLE), "--out", str(out), "--target-url", target.url, "--clock", "virtual"])

    captured = capsys.readouterr()
    assert code == 1  # the sample's bad rows; every good row reached Target
    assert "succeeded          10" in captured.out
    assert authorization_headers and set(authorization_headers) == {f"Bearer {token}"}
    assert "with a profile token" in captured.err
    assert token not in everything_written(out, captured, caplog)


def test_oauth_credentials_from_a_file_mint_one_profile_token(tmp_path, capsys, caplog, target):
    target.configure(require_auth=True, valid_tokens=set())  # no token until one is generated
    credentials = target.oauth_secret("acme")
    oauth_file = tmp_path / "oauth.json"
    oauth_file.write_text(json.dumps(credentials))
    oauth_file.chmod(0o600)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    options = ["--target-url", target.url, "--oauth-file", str(oauth_file), "--clock", "virtual", "--json"]

    code = main(["run", str(SAMPLE), "--out", str(out), *options])

    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 1 and result["succeeded"] == 10
    assert result["target_calls"]["ims"] == {"200": 1}
    assert result["target_calls"]["token"] == {"200": 1, "404": 1}  # none yet (GET), then one made
    assert "warning" not in captured.err  # chmod 600: nothing to say
    written = everything_written(out, captured, caplog)
    assert credentials["client_secret"] not in written
    assert not any(token in written for token in target.config.valid_tokens)


def test_a_world_readable_token_file_is_used_with_a_warning(tmp_path, capsys, target):
    target.configure(require_auth=True, valid_tokens={"file-token-1"})
    token_file = tmp_path / "token"
    token_file.write_text("file-token-1\n")
    token_file.chmod(0o644)

    code = main(
        [
            "run",
            str(SAMPLE),
            "--out",
            str(tmp_path / "out"),
            "--target-url",
            target.url,
            "--token-file",
            str(token_file),
            "--clock",
            "virtual",
        ]
    )

    assert code == 1
    assert f"{token_file} is open to other users: chmod 600 {token_file}" in capsys.readouterr().err


def test_the_real_clock_on_the_built_in_emulator_really_waits(tmp_path, capsys):
    options = ["--clock", "real", "--polls-until-complete", "0", "--set", "POLL_INITIAL_DELAY_SECONDS=2"]
    options += ["--set", "LANDING_CHECK_DELAY_SECONDS=1"]  # its Wait is real too (300 s by default)

    code = main(["run", str(SAMPLE), "--out", str(tmp_path), "--json", *options])

    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["succeeded"] == 10
    assert result["clock"] == "real" and result["simulated_seconds"] is None
    assert result["real_seconds"] >= 2 + 1  # the Wait states (first poll, landing check) took real seconds
    assert result["landing_check"]["verified"] == 9  # 10 succeeded rows, 9 ids


@pytest.mark.slow
def test_a_target_allowing_10_calls_a_minute_in_real_time_gets_every_row_of_5_batches(
    tmp_path, capsys, caplog, authorization_headers
):
    """Against a Target URL the run keeps Target's real minute: no 503 storm, every row applied."""
    token = f"profile-{secrets.token_hex(16)}"
    token_file = tmp_path / "target.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    source = clean_file(tmp_path / "twenty-five.csv", 25)
    out = tmp_path / "out"
    config = EmulatorConfig(
        seed=1, calls_per_minute=10, polls_until_complete=1, require_auth=True, valid_tokens={token}
    )
    caplog.set_level(logging.DEBUG)
    with TargetEmulator(config) as target:  # its own real clock, as a remote Target's
        code = main(
            [
                "run", str(source), "--out", str(out), "--json", "--target-url", target.url,
                "--token-file", str(token_file),
                "--set", "BATCH_MAX_ROWS=5",
                "--set", "CALLS_PER_MINUTE=10",
                "--set", "POLL_INITIAL_DELAY_SECONDS=5",
                "--set", "POLL_MAX_DELAY_SECONDS=10",
                # Not the landing check's real 5 minutes and its fetches in this minute's budget.
                "--set", "LANDING_CHECK_SAMPLE_ROWS=0",
            ]
        )  # fmt: skip
        captured = capsys.readouterr()
        result = json.loads(captured.out)

        assert code == 0, result["reason"]
        assert result["clock"] == "real"  # the default for a Target URL
        assert result["status"] == "COMPLETE"
        assert (result["received"], result["succeeded"]) == (25, 25)
        assert [b["status"] for b in result["batches"]] == ["COMPLETE"] * 5
        for i in range(1, 26):
            assert target.store.get("demo", "thirdPartyId", f"CRM-{i}") == {"tier": "gold"}
        # Each batch sent once; the client kept to Target's minute (10 calls, 15 needed).
        assert target.calls["batchUpdate"] == 5
        assert target.max_calls_per_window("demo") <= 10
        calls = result["target_calls"]
        assert calls["batchUpdate"] == {"200": 5}
        assert sum(calls["batchStatus"].values()) == target.calls["batchStatus"]
        assert calls["batchStatus"]["200"] == 10  # one "incomplete", then complete, per batch
    # The token went to Target as a bearer token on every call, and nowhere else.
    assert len(authorization_headers) == target.calls["batchUpdate"] + target.calls["batchStatus"]
    assert set(authorization_headers) == {f"Bearer {token}"}
    assert token not in everything_written(out, captured, caplog)


def test_lost_updates_are_caught_by_the_landing_check_in_the_output_and_json(tmp_path, capsys):
    """`--lose-share`: the built-in emulator reports a share of rows successful and never applies
    them; the run's landing check (every row sampled here) reads them back and says so."""
    source = clean_file(tmp_path / "forty.csv", 40)
    options = ["--lose-share", "0.25", "--seed", "3", "--set", "LANDING_CHECK_SAMPLE_ROWS=40"]

    code = main(["run", str(source), "--out", str(tmp_path / "json"), "--json", *options])

    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["status"] == "COMPLETE"  # Target reported every row successful
    check = result["landing_check"]
    assert check["status"] == "DONE" and check["sampled"] == 40
    assert 0 < check["notVisible"] < 40 and check["verified"] == 40 - check["notVisible"]
    assert check["rounds"] == 4  # the first read, then LANDING_CHECK_RETRIES (3) more of the lost ones
    assert result["lambda_invocations"]["LandingCheck"] == 5  # draw the sample, 4 reads
    assert result["target_calls"]["profiles"] == {
        "200": 40 - check["notVisible"],
        "404": 4 * check["notVisible"],
    }
    summary = json.loads(Path(result["files"]["summary"]).read_text())
    assert summary["landingCheck"]["notVisible"] == check["notVisible"]
    assert len(summary["landingRows"]) == check["notVisible"]

    code = main(["run", str(source), "--out", str(tmp_path / "text"), *options])

    output = capsys.readouterr()
    assert code == 0
    assert (
        f"  landed: {check['verified']} of 40 sampled profiles verified, 0 mismatched, "
        f"{check['notVisible']} not yet visible, 0 unchecked (4 read(s))"
    ) in output.out
    assert "landing check:" in output.err  # the progress lines name each round


def test_the_landing_check_can_be_turned_off(tmp_path, capsys):
    code = main(
        ["run", str(SAMPLE), "--out", str(tmp_path), "--json", "--set", "LANDING_CHECK_SAMPLE_ROWS=0"]
    )

    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["landing_check"] == {"sampled": 0, "reason": "off (LANDING_CHECK_SAMPLE_ROWS is 0)"}
    assert "profiles" not in result["target_calls"] and "LandingCheck" not in result["lambda_invocations"]
