"""profile-sync validate: the same engine offline, a human summary or one JSON object, exit codes."""

from __future__ import annotations

import gzip
import json

import pytest

from profile_sync_local.cli import main
from profile_sync_local.cli.local_run import parse_sets
from profile_sync_local.cli.options import EXIT_USAGE
from profile_sync_local.cli.validate import EXIT_FILE_REJECTED, EXIT_OK, EXIT_ROWS_REJECTED
from profile_sync_local.stack.project import ROOT

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


# --------------------------------------------------------------------------------- run: options
# Each of these is refused before anything runs: one line on stderr naming the option, exit 2.
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "BATCH_MAX_ROW=2000"], "BATCH_MAX_ROW: no such setting (did you mean BATCH_MAX_ROWS?)"),
        (["--set", "BATCH_MAX_ROWS=2k"], "BATCH_MAX_ROWS='2k' is not a valid int"),
        (["--set", "BATCH_MAX_ROWS=0"], "batch_max_rows must be positive"),
        (["--set", "CALLS_PER_MINUTE=-1"], "CALLS_PER_MINUTE=-1: must be 0 or more"),
        (["--set", "POLL_INITIAL_DELAY_SECONDS"], "expected NAME=VALUE"),
        (["--set", "API_VERSION=v3"], "api_version must be one of v2, v1, single"),
        (["--set", "TARGET_BASE_URL=https://x.tt.omtrdc.net"], "TARGET_BASE_URL: use --target-url"),
        (["--set", "TOKEN_SECRET_ID=x"], "TOKEN_SECRET_ID: use --token-file or --oauth-file"),
        (
            ["--target-url", "https://acme.tt.omtrdc.net", "--auth", "token"],
            "--auth: switches of the built-in",
        ),
        (["--target-url", "https://acme.tt.omtrdc.net", "--fail-share", "0.1"], "--fail-share: switches"),
        (["--target-url", "https://acme.tt.omtrdc.net", "--lose-share", "0.1"], "--lose-share: switches"),
        (["--target-url", "http://acme.tt.omtrdc.net"], "--target-url: refusing a non-HTTPS URL"),
        (["--target-url", "https://acme.tt.omtrdc.net", "--token-file", "missing.token"], "no such file"),
        (["--oauth-file", "x.json"], "--oauth-file needs --target-url"),
    ],
)
def test_run_refuses_a_bad_option_before_running_anything(tmp_path, capsys, options, message):
    code = main(["run", str(SAMPLE), "--out", str(tmp_path / "out"), *options])

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing ran


def test_run_refuses_a_token_file_and_an_oauth_file_together(tmp_path, capsys):
    token_file, oauth_file = secret_file(tmp_path / "t", "tok"), secret_file(tmp_path / "o.json", "{}")
    url = ["--target-url", "https://acme.tt.omtrdc.net"]

    code = main(["run", str(SAMPLE), *url, "--token-file", str(token_file), "--oauth-file", str(oauth_file)])

    assert code == EXIT_USAGE
    assert "give --token-file or --oauth-file, not both" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "expected the profile token alone"),
        ("two words", "expected the profile token alone"),
    ],
)
def test_run_refuses_a_token_file_that_holds_no_single_token(tmp_path, capsys, content, message):
    token_file = secret_file(tmp_path / "t", content)

    code = main(
        ["run", str(SAMPLE), "--target-url", "https://acme.tt.omtrdc.net", "--token-file", str(token_file)]
    )

    err = capsys.readouterr().err
    assert code == EXIT_USAGE and message in err
    assert "two words" not in err  # never echo what might be a secret


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "expected a JSON object"),
        ('{"client_id": "id-1", "client_secret": "s3cret-value"}', "missing tenant (needs client_id"),
        (
            '{"client_id": "i", "client_secret": "s3cret-value", "tenant": "t", "ims_url": "http://ims.example"}',
            "ims_url: refusing a non-HTTPS URL",
        ),
    ],
)
def test_run_names_what_an_oauth_file_lacks_without_its_values(tmp_path, capsys, content, message):
    oauth_file = secret_file(tmp_path / "oauth.json", content)

    code = main(
        ["run", str(SAMPLE), "--target-url", "https://acme.tt.omtrdc.net", "--oauth-file", str(oauth_file)]
    )

    err = capsys.readouterr().err
    assert code == EXIT_USAGE and message in err
    assert "s3cret-value" not in err


def test_parse_sets_gives_environment_variables_the_functions_read():
    assert parse_sets(["batch_max_rows=2000", "POLL_INITIAL_DELAY_SECONDS= 5"]) == {
        "BATCH_MAX_ROWS": "2000",
        "POLL_INITIAL_DELAY_SECONDS": "5",
    }


def secret_file(path, content: str):
    path.write_text(content)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("cut.csv.gz", gzip.compress(b"pcId,a\n" + b"1,x\n" * 50_000)[:-200], "cannot read"),
        ("fake.csv.gz", b"not gzip at all", "cannot read"),
        ("bomb.csv.gz", gzip.compress(b"pcId,a\n" + b"1,x\n" * 10_000), "larger than the configured maximum"),
    ],
    ids=["truncated-gzip", "not-gzip", "over-file-max-bytes"],
)
def test_a_file_that_cannot_be_read_still_prints_one_json_object(tmp_path, capsys, name, content, reason):
    # A script reading --json got an empty stdout for an unreadable file (before: json.loads failed).
    source = tmp_path / name
    source.write_bytes(content)
    args = ["validate", str(source), "--out", str(tmp_path / "out"), "--json", "--file-max-bytes", "4096"]
    assert main(args) == EXIT_FILE_REJECTED
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert reason in report["file_error"] and name in report["file_error"]
    assert (report["accepted"], report["batches"]) == (0, [])
    assert reason in captured.err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_out_folder_that_cannot_be_made_is_a_bad_option(tmp_path, capsys, command):
    # Before: a traceback and exit 1, which for run reads as COMPLETE_WITH_ERRORS.
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    assert main([command, str(SAMPLE), "--out", str(taken)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert f"--out {taken}: cannot create the report folder: File exists" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("switch", "message"),
    [
        (["--fail-share", "2"], "fail_share must be between 0 and 1"),
        (["--stuck-share", "-0.5"], "stuck_share must be between 0 and 1"),
        (["--lose-share", "1.5"], "lose_share must be between 0 and 1"),
        (["--visibility-seconds", "-1"], "visibility_seconds must be 0 or more"),
        (["--polls-until-complete", "-3"], "polls_until_complete must be 0 or more"),
        (["--throttle-per-minute", "-1"], "calls_per_minute must be 0 or more"),
        (["--client", "bad/code"], "'bad/code' is not a valid Target client code"),
    ],
)
def test_run_refuses_a_bad_switch_before_anything_runs(tmp_path, capsys, switch, message):
    # Before: a traceback and exit 1 (a share), a silent no-op (a negative count), or a job
    # REJECTED for an "unknown folder" (a client code with a '/').
    assert main(["run", str(SAMPLE), "--out", str(tmp_path / "out"), *switch]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""
