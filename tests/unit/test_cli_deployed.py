"""profile-sync submit / jobs / status / report against a deployed stack, the stack in moto."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync_local.cli import main
from profile_sync_local.deployed.resources import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, guarded
from profile_sync_local.stack.project import table_definition

REGION = "us-east-1"
BUCKET = "drop-bucket"
TABLE = "jobs-table"
DONE, RUNNING, REJECTED = (
    "20250601T100000Z-aaaaaaaaaaaa",
    "20250602T090000Z-bbbbbbbbbbbb",
    "20250531T080000Z-cccc",
)
SUMMARY = {
    "jobId": DONE,
    "status": "COMPLETE_WITH_ERRORS",
    "account": {
        "received": 16,
        "rejected": 5,
        "skipped": 1,
        "succeeded": 8,
        "failed": 2,
        "not_found": 0,
        "pending": 0,
    },
}
ROWS_CSV = "line,id,outcome,reason,batch\n3,,rejected,empty_id,\n9,CRM-7,failed,update failed,1\n"
REJECTS_CSV = "line,reason,detail,original\n3,empty_id,,\n"


def _job(store: DynamoJobStore, job_id: str, created: str, key: str, **fields) -> None:
    store.create_job(
        {
            "jobId": job_id,
            "status": "RECEIVED",
            "sourceBucket": BUCKET,
            "sourceKey": key,
            "createdAt": created,
            "updatedAt": created,
        }
    )
    store.update_job(job_id, fields)


@pytest.fixture
def aws(aws):
    """The drop bucket and the JobsTable, over HTTP: a finished job, a running one, a rejected one."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    boto3.client("dynamodb", region_name=REGION).create_table(**table_definition("JobsTable", TABLE))
    store = DynamoJobStore(TABLE, resource=boto3.resource("dynamodb", region_name=REGION))
    common = {"clientCode": "acme", "apiVersion": "v2", "inputMode": "encoded"}

    _job(store, DONE, "2025-06-01T10:00:00+00:00", "incoming/acme/visitors.csv", **common)
    store.update_job(DONE, {"received": 16, "accepted": 10, "rejected": 5, "skipped": 1, "batchCount": 2})
    store.put_batches(DONE, [{"batchIndex": 1, "rows": 6}, {"batchIndex": 2, "rows": 4}])
    store.update_batch(
        DONE,
        1,
        {
            "status": "COMPLETE",
            "polls": 3,
            "counts": {"succeeded": 4, "failed": 2, "not_found": 0, "pending": 0},
            "submittedAt": "2025-06-01T10:00:05+00:00",
            "endedAt": "2025-06-01T10:07:05+00:00",
        },
    )
    store.update_batch(
        DONE,
        2,
        {
            "status": "COMPLETE",
            "polls": 2,
            "counts": {"succeeded": 4, "failed": 0, "not_found": 0, "pending": 0},
        },
    )
    store.update_job(
        DONE,
        {
            "status": "COMPLETE_WITH_ERRORS",
            "succeeded": 8,
            "failed": 2,
            "not_found": 0,
            "pending": 0,
            "finishedAt": "2025-06-01T10:08:00+00:00",
        },
    )
    prefix = f"jobs/{DONE}/"
    s3.put_object(Bucket=BUCKET, Key=prefix + "report/summary.json", Body=json.dumps(SUMMARY).encode())
    s3.put_object(Bucket=BUCKET, Key=prefix + "report/rows.csv", Body=ROWS_CSV.encode())
    s3.put_object(Bucket=BUCKET, Key=prefix + "rejects.csv", Body=REJECTS_CSV.encode())

    _job(
        store,
        RUNNING,
        "2025-06-02T09:00:00+00:00",
        "incoming/acme/api=v1/crm.csv.gz",
        **common | {"apiVersion": "v1"},
    )
    store.update_job(
        RUNNING,
        {"status": "QUEUED", "received": 5, "accepted": 5, "rejected": 0, "skipped": 0, "batchCount": 2},
    )
    store.put_batches(RUNNING, [{"batchIndex": 1, "rows": 3}, {"batchIndex": 2, "rows": 2}])
    store.update_batch(
        RUNNING,
        1,
        {
            "status": "STUCK",
            "polls": 4,
            "counts": {"succeeded": 1, "failed": 2, "not_found": 0, "pending": 0},
            "reason": "Target reported the batch stuck: it will not complete",
        },
    )
    store.update_batch(RUNNING, 2, {"status": "POLLING", "polls": 2})
    s3.put_object(Bucket=BUCKET, Key=f"jobs/{RUNNING}/rejects.csv", Body=b"line,reason,detail,original\n")

    _job(store, REJECTED, "2025-05-31T08:00:00+00:00", "incoming/acme/ecid.csv", clientCode="acme")
    store.update_job(REJECTED, {"status": "REJECTED", "reason": "first column must be pcId or thirdPartyId"})
    yield s3


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------- submit
def test_submit_uploads_to_the_clients_drop_prefix_and_says_how_to_find_the_job(aws, tmp_path, capsys):
    source = tmp_path / "visitors.csv"
    source.write_text("thirdPartyId,tier\nCRM-1,gold\n")
    code, out, _ = run(capsys, "submit", str(source), "--bucket", BUCKET, "--client", "acme")
    assert code == EXIT_OK
    body = aws.get_object(Bucket=BUCKET, Key="incoming/acme/visitors.csv")["Body"].read()
    assert body == source.read_bytes()
    assert f"s3://{BUCKET}/incoming/acme/visitors.csv" in out
    assert "profile-sync jobs" in out
    assert "profile-sync status JOB" in out


def test_submit_api_and_mode_become_folders_and_the_client_can_come_from_the_environment(
    aws, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("PROFILE_SYNC_CLIENT", "shop_2")
    source = tmp_path / "crm export.csv.gz"
    source.write_bytes(b"\x1f\x8b not really gzip")
    code, out, _ = run(
        capsys, "submit", str(source), "--bucket", BUCKET, "--api", "v1", "--input-mode", "raw"
    )
    assert code == EXIT_OK
    key = "incoming/shop_2/api=v1/mode=raw/crm export.csv.gz"
    assert aws.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == source.stat().st_size
    assert key in out


def _drops(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/").get("Contents", [])]


@pytest.mark.parametrize("client", ["../etc", "-acme", "a" * 41, "ac me"])
def test_submit_refuses_an_invalid_client_code_and_uploads_nothing(aws, tmp_path, capsys, client):
    source = tmp_path / "v.csv"
    source.write_text("pcId,a\n1,b\n")
    code, out, err = run(capsys, "submit", str(source), "--bucket", BUCKET, f"--client={client}")
    assert code == EXIT_ERROR
    assert "not a valid Target client code" in err
    assert out == ""
    assert _drops(aws) == []


def test_submit_refuses_a_missing_file(aws, tmp_path, capsys):
    code, _, err = run(capsys, "submit", str(tmp_path / "nope.csv"), "--bucket", BUCKET, "--client", "acme")
    assert code == EXIT_NOT_FOUND
    assert "nope.csv: no such file" in err
    assert _drops(aws) == []


def test_submit_without_a_client_asks_for_one(aws, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PROFILE_SYNC_CLIENT", raising=False)
    source = tmp_path / "v.csv"
    source.write_text("pcId,a\n1,b\n")
    code, _, err = run(capsys, "submit", str(source), "--bucket", BUCKET)
    assert code == EXIT_ERROR
    assert "--client" in err


def test_submit_to_a_bucket_that_does_not_exist(aws, tmp_path, capsys):
    source = tmp_path / "v.csv"
    source.write_text("pcId,a\n1,b\n")
    code, _, err = run(capsys, "submit", str(source), "--bucket", "no-such-bucket", "--client", "acme")
    assert code == EXIT_NOT_FOUND
    assert "bucket 'no-such-bucket' not found in us-east-1" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------- jobs
def test_jobs_json_lists_recent_jobs_newest_first_with_their_counts(aws, capsys):
    code, out, _ = run(capsys, "jobs", "--table", TABLE, "--json")
    assert code == EXIT_OK
    jobs = json.loads(out)
    assert [j["jobId"] for j in jobs] == [RUNNING, DONE, REJECTED]
    running, done, rejected = jobs

    assert running == {
        "jobId": RUNNING,
        "status": "QUEUED",
        "clientCode": "acme",
        "apiVersion": "v1",
        "sourceKey": "incoming/acme/api=v1/crm.csv.gz",
        "createdAt": "2025-06-02T09:00:00+00:00",
        "finishedAt": None,
        # Not final: added up from its batches; the batch still polling holds its 2 rows as pending.
        "received": 5,
        "rejected": 0,
        "skipped": 0,
        "unchanged": 0,
        "succeeded": 1,
        "failed": 2,
        "not_found": 0,
        "pending": 2,
        "reason": None,
    }
    assert done == {
        "jobId": DONE,
        "status": "COMPLETE_WITH_ERRORS",
        "clientCode": "acme",
        "apiVersion": "v2",
        "sourceKey": "incoming/acme/visitors.csv",
        "createdAt": "2025-06-01T10:00:00+00:00",
        "finishedAt": "2025-06-01T10:08:00+00:00",
        "received": 16,
        "rejected": 5,
        "skipped": 1,
        "unchanged": 0,
        "succeeded": 8,
        "failed": 2,
        "not_found": 0,
        "pending": 0,
        "reason": None,
    }
    assert rejected["status"] == "REJECTED"
    assert rejected["reason"] == "first column must be pcId or thirdPartyId"
    assert rejected["apiVersion"] is None
    # Nothing was read or sent: unknown received, nothing sent.
    assert [rejected[n] for n in ("received", "succeeded", "failed", "not_found", "pending")] == [
        None,
        0,
        0,
        0,
        0,
    ]


def test_jobs_table_for_a_person(aws, capsys):
    code, out, _ = run(capsys, "jobs", "--table", TABLE)
    assert code == EXIT_OK
    header, first, second, third = out.splitlines()
    assert header.split() == [
        "JOB", "STATUS", "CLIENT", "CREATED", "RECEIVED", "SUCCEEDED", "FAILED", "REJECTED", "PENDING",
        "SOURCE",
    ]  # fmt: skip
    assert first.split() == [
        RUNNING, "QUEUED", "acme", "2025-06-02T09:00:00+00:00", "5", "1", "2", "0", "2",
        "incoming/acme/api=v1/crm.csv.gz",
    ]  # fmt: skip
    assert second.split()[:2] == [DONE, "COMPLETE_WITH_ERRORS"]
    assert third.split()[4] == "-"  # a rejected file: rows received unknown


def test_jobs_limit(aws, capsys):
    code, out, _ = run(capsys, "jobs", "--table", TABLE, "--json", "--limit", "1")
    assert code == EXIT_OK
    assert [j["jobId"] for j in json.loads(out)] == [RUNNING]
    with pytest.raises(SystemExit):
        main(["jobs", "--table", TABLE, "--limit", "0"])


def test_jobs_in_an_empty_table(capsys, aws):
    boto3.client("dynamodb", region_name=REGION).create_table(**table_definition("JobsTable", "empty"))
    code, out, _ = run(capsys, "jobs", "--table", "empty")
    assert code == EXIT_OK
    assert "no jobs yet in empty" in out
    code, out, _ = run(capsys, "jobs", "--table", "empty", "--json")
    assert json.loads(out) == []


def test_jobs_in_a_table_that_does_not_exist(aws, capsys):
    code, out, err = run(capsys, "jobs", "--table", "no-such-table")
    assert code == EXIT_NOT_FOUND
    assert "ResourceNotFoundException" in err
    assert out == ""


# ------------------------------------------------------------------------------------- status
def test_status_json_of_a_finished_job_and_its_batches(aws, capsys):
    code, out, _ = run(capsys, "status", DONE, "--table", TABLE, "--json")
    assert code == EXIT_OK
    report = json.loads(out)
    job = report["job"]
    assert job["jobId"] == DONE
    assert job["status"] == "COMPLETE_WITH_ERRORS"
    assert job["clientCode"] == "acme"
    assert job["apiVersion"] == "v2"
    assert job["inputMode"] == "encoded"
    assert job["sourceBucket"] == BUCKET
    assert job["sourceKey"] == "incoming/acme/visitors.csv"
    assert job["createdAt"] == "2025-06-01T10:00:00+00:00"
    assert job["finishedAt"] == "2025-06-01T10:08:00+00:00"
    assert job["batchCount"] == 2
    assert {n: job[n] for n in SUMMARY["account"]} == SUMMARY["account"]
    assert report["batches"] == [
        {
            "batchIndex": 1,
            "status": "COMPLETE",
            "rows": 6,
            "polls": 3,
            "counts": {"succeeded": 4, "failed": 2, "not_found": 0, "pending": 0},
            "submittedAt": "2025-06-01T10:00:05+00:00",
            "endedAt": "2025-06-01T10:07:05+00:00",
            "reason": None,
        },
        {
            "batchIndex": 2,
            "status": "COMPLETE",
            "rows": 4,
            "polls": 2,
            "counts": {"succeeded": 4, "failed": 0, "not_found": 0, "pending": 0},
            "submittedAt": None,
            "endedAt": None,
            "reason": None,
        },
    ]


def test_status_json_of_a_running_job_counts_its_batches_so_far(aws, capsys):
    code, out, _ = run(capsys, "status", RUNNING, "--table", TABLE, "--json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["job"]["status"] == "QUEUED"
    assert [report["job"][n] for n in ("received", "succeeded", "failed", "pending")] == [5, 1, 2, 2]
    stuck, polling = report["batches"]
    assert (stuck["status"], stuck["polls"], stuck["reason"]) == (
        "STUCK",
        4,
        "Target reported the batch stuck: it will not complete",
    )
    assert (polling["status"], polling["rows"], polling["polls"], polling["counts"]) == (
        "POLLING",
        2,
        2,
        None,
    )


def test_status_for_a_person(aws, capsys):
    code, out, _ = run(capsys, "status", RUNNING, "--table", TABLE)
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["job", RUNNING, "QUEUED"]
    assert f"s3://{BUCKET}/incoming/acme/api=v1/crm.csv.gz" in out
    assert (
        "received 5 = rejected 0 + skipped 0 + unchanged 0 + succeeded 1 + failed 2 + not_found 0 + pending 2"
        in out
    )
    batch_rows = [line.split() for line in lines if line.startswith("    ")]
    assert batch_rows[0] == [
        "#",
        "STATUS",
        "ROWS",
        "POLLS",
        "SUCCEEDED",
        "FAILED",
        "NOT_FOUND",
        "PENDING",
        "REASON",
    ]
    assert batch_rows[1][:8] == ["1", "STUCK", "3", "4", "1", "2", "0", "0"]
    assert "stuck: it will not complete" in lines[-2]
    assert batch_rows[2] == ["2", "POLLING", "2", "2", "-", "-", "-", "-"]


CHECKED = {
    "status": "DONE",
    "sampled": 8,
    "eligible": 8,
    "verified": 6,
    "mismatched": 1,
    "notVisible": 1,
    "unchecked": 0,
    "rounds": 4,
}


def test_status_and_report_show_the_landing_check_and_the_re_drive_links(aws, tmp_path, capsys):
    store = DynamoJobStore(TABLE, resource=boto3.resource("dynamodb", region_name=REGION))
    store.update_job(DONE, {"landingCheck": CHECKED, "redrivenBy": [RUNNING]})
    store.update_job(RUNNING, {"parentJobId": DONE, "landingCheck": {"status": "WAITING", "sampled": 3}})
    landed = (
        "landed   6 of 8 sampled profiles verified, 1 mismatched, 1 not yet visible, 0 unchecked (4 read(s))"
    )

    assert run(capsys, "status", DONE, "--table", TABLE)[1].count(landed) == 1
    assert f"re-driven by {RUNNING}" in run(capsys, "status", DONE, "--table", TABLE)[1]
    job = json.loads(run(capsys, "status", DONE, "--table", TABLE, "--json")[1])["job"]
    assert (job["landingCheck"], job["redrivenBy"], job["parentJobId"]) == (CHECKED, [RUNNING], None)
    running = run(capsys, "status", RUNNING, "--table", TABLE)[1]
    assert f"re-drive of job {DONE}" in running
    assert "landed   checking: 3 sampled profiles, read 0 done" in running
    report = run(capsys, "report", DONE, "--table", TABLE, "--out", str(tmp_path))[1]
    assert "  landed: 6 of 8 sampled profiles verified" in report
    # A job whose check did not run says why.
    store.update_job(DONE, {"landingCheck": {"status": "DONE", "sampled": 0, "reason": "not run: no row"}})
    assert "landed   not run: no row" in run(capsys, "status", DONE, "--table", TABLE)[1]


def test_status_of_a_rejected_job_shows_the_reason(aws, capsys):
    code, out, _ = run(capsys, "status", REJECTED, "--table", TABLE)
    assert code == EXIT_OK
    assert "REJECTED" in out
    assert "reason   first column must be pcId or thirdPartyId" in out


def test_status_of_an_unknown_job(aws, capsys):
    code, out, err = run(capsys, "status", "20990101T000000Z-nope", "--table", TABLE, "--json")
    assert code == EXIT_NOT_FOUND
    assert "job '20990101T000000Z-nope' not found in jobs-table" in err
    assert out == ""


# ------------------------------------------------------------------------------------- report
def test_report_downloads_the_three_files_and_prints_the_account(aws, tmp_path, capsys):
    out_dir = tmp_path / "report"
    code, out, _ = run(capsys, "report", DONE, "--table", TABLE, "--out", str(out_dir))
    assert code == EXIT_OK
    assert json.loads((out_dir / "summary.json").read_text()) == SUMMARY
    assert (out_dir / "rows.csv").read_text() == ROWS_CSV
    assert (out_dir / "rejects.csv").read_text() == REJECTS_CSV
    for name in ("summary.json", "rows.csv", "rejects.csv"):
        assert str(out_dir / name) in out
    assert "COMPLETE_WITH_ERRORS" in out
    # summary.json from before delta sync: no unchanged rows.
    assert (
        "received 16 = rejected 5 + skipped 1 + unchanged 0 + succeeded 8 + failed 2 + not_found 0 "
        "+ pending 0" in out
    )


def test_report_of_a_running_job_has_only_the_rejects_so_far(aws, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "report", RUNNING, "--table", TABLE)
    assert code == EXIT_OK
    out_dir = tmp_path / "out" / RUNNING  # the default --out
    assert sorted(p.name for p in out_dir.iterdir()) == ["rejects.csv"]
    assert "written when the job has finished" in out
    assert "pending 2" in out


def test_report_of_a_job_without_files(aws, tmp_path, capsys):
    code, _, err = run(capsys, "report", REJECTED, "--table", TABLE, "--out", str(tmp_path / "r"))
    assert code == EXIT_NOT_FOUND
    assert "has no report files yet" in err
    assert not (tmp_path / "r").exists()


def test_report_of_an_unknown_job(aws, tmp_path, capsys):
    code, _, err = run(capsys, "report", "nope", "--table", TABLE, "--out", str(tmp_path))
    assert code == EXIT_NOT_FOUND
    assert "job 'nope' not found" in err


# ------------------------------------------------------------------------------------- names from the stack
@pytest.fixture
def cloudformation(monkeypatch):
    """Every CloudFormation client the CLI makes answers from this Stubber (moto's needs extras)."""
    client = boto3.client("cloudformation", region_name=REGION)
    stubber = Stubber(client)
    original = boto3.session.Session.client

    def make(self, service, *args, **kwargs):
        return client if service == "cloudformation" else original(self, service, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", make)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def _stack(name: str, outputs: dict) -> dict:
    return {
        "Stacks": [
            {
                "StackName": name,
                "CreationTime": "2025-06-01T00:00:00Z",
                "StackStatus": "CREATE_COMPLETE",
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }
        ]
    }


def test_names_come_from_the_default_stacks_outputs(aws, cloudformation, tmp_path, capsys):
    outputs = {"DropBucketName": BUCKET, "JobsTableName": TABLE, "StateMachineArn": "arn:..."}
    cloudformation.add_response(
        "describe_stacks", _stack("target-profile-sync", outputs), {"StackName": "target-profile-sync"}
    )
    cloudformation.add_response("describe_stacks", _stack("mine", outputs), {"StackName": "mine"})

    code, out, _ = run(capsys, "jobs", "--json")
    assert code == EXIT_OK
    assert [j["jobId"] for j in json.loads(out)] == [RUNNING, DONE, REJECTED]

    source = tmp_path / "v.csv"
    source.write_text("pcId,a\n1,b\n")
    code, _, _ = run(capsys, "submit", str(source), "--client", "acme", "--stack", "mine")
    assert code == EXIT_OK
    assert _drops(aws) == ["incoming/acme/v.csv"]


def test_options_win_over_the_stack(aws, cloudformation, capsys):
    # No describe_stacks response queued: the stubber would fail the call if it were made.
    code, _, _ = run(capsys, "status", DONE, "--table", TABLE, "--stack", "not-deployed")
    assert code == EXIT_OK


def test_a_stack_that_does_not_exist(aws, cloudformation, capsys):
    cloudformation.add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        service_message="Stack with id gone does not exist",
        http_status_code=400,
    )
    code, out, err = run(capsys, "jobs", "--stack", "gone")
    assert code == EXIT_NOT_FOUND
    assert "stack 'gone' not found in us-east-1" in err
    assert "Traceback" not in err
    assert out == ""


def test_a_stack_without_the_output(aws, cloudformation, capsys):
    cloudformation.add_response("describe_stacks", _stack("other", {"Something": "x"}))
    code, _, err = run(capsys, "status", DONE, "--stack", "other")
    assert code == EXIT_ERROR
    assert "stack 'other' has no output JobsTableName: give --table" in err


def test_names_from_a_stack_in_moto(aws, capsys):
    pytest.importorskip("moto.cloudformation", reason="moto's CloudFormation needs moto[cloudformation]")
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"DropBucketName": {"Value": BUCKET}, "JobsTableName": {"Value": TABLE}},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="target-profile-sync", TemplateBody=json.dumps(template)
    )
    code, out, _ = run(capsys, "status", DONE, "--json")
    assert code == EXIT_OK
    assert json.loads(out)["job"]["jobId"] == DONE


# ------------------------------------------------------------------------------------- AWS set-up errors
def test_no_credentials_is_one_clear_line(capsys, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for argv in (["jobs", "--table", TABLE], ["status", DONE], ["report", DONE]):
        code, out, err = run(capsys, *argv)
        assert code == EXIT_ERROR
        assert (
            err.strip()
            == "profile-sync: no AWS credentials: set AWS_PROFILE, run `aws configure` or `aws sso login`"
        )
        assert out == ""


def test_no_region_is_one_clear_line(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = run(capsys, "jobs", "--table", TABLE)
    assert code == EXIT_ERROR
    assert "no AWS region: give --region" in err


def test_region_option_wins(aws, capsys, monkeypatch):
    # The table lives in us-east-1; in another region it is not there.
    code, _, err = run(capsys, "jobs", "--table", TABLE, "--region", "eu-west-1")
    assert code == EXIT_NOT_FOUND
    assert "ResourceNotFoundException" in err


def test_any_other_aws_refusal_is_one_line_and_exit_2(capsys):
    from botocore.exceptions import ClientError  # noqa: PLC0415

    @guarded
    def refused(_args):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not you"}}, "GetItem")

    assert refused(None) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == "profile-sync: AWS refused GetItem: AccessDenied: not you"
