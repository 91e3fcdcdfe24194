"""What the pipeline emits, from the ingest through every workflow step (issue 6).

The real handlers under the real ASL (the `pipeline` fixture), their stdout captured: Powertools
writes one JSON log line per log call and one EMF line (a JSON object with "_aws") per flush.
- Enough scenarios emit every metric of the registry, and only those, in the one namespace with
  the registry's dimension sets; every log line carries its job's id as correlation_id.
- A job whose ids, values and token are recognisable leaves none of them in a log line, a metric
  or an SNS message (the reports in S3 hold ids and lines: that is their purpose).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

import boto3
import pytest

from profile_sync import telemetry
from profile_sync.workflow import bulk as bulk_step
from profile_sync.workflow import report as report_step
from profile_sync_local.stack import project
from profile_sync_local.stack.aws_server import REGION
from profile_sync_local.stack.functions import load_function
from tests.conftest import FakeContext, event_path

# (sfn_local gives the Distributed Map AWS's failure rule: a failed child fails the run.)
pytestmark = pytest.mark.usefixtures("one_logger_per_function")

SERVICE = "profile-sync"
WORKFLOW_FUNCTIONS = set(project.WORKFLOW_FUNCTIONS)  # as the harness names their Lambda context


# ------------------------------------------------------------------------------------- capture
@pytest.fixture
def one_logger_per_function(monkeypatch):
    """One batch at a time: the harness gives each function its own logger (as Lambda gives it a
    process), but two invocations of one function at once would still share its module."""
    monkeypatch.setenv("MAX_CONCURRENCY", "1")


@dataclass
class Output:
    """Captured stdout, split into Powertools log lines and EMF metric lines."""

    text: str
    logs: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Output:
        """Every JSON object in the text (one a line, or run together when threads interleave)."""
        output = cls(text)
        decoder = json.JSONDecoder()
        for line in text.splitlines():
            pos = 0
            while pos < len(line):
                if line[pos].isspace():
                    pos += 1
                    continue
                try:
                    item, pos = decoder.raw_decode(line, pos)
                except ValueError:
                    output.other.append(line[pos:])
                    break
                if isinstance(item, dict) and "_aws" in item:
                    output.metrics.append(item)
                elif isinstance(item, dict) and {"level", "message", "service"} <= item.keys():
                    output.logs.append(item)
                else:
                    output.other.append(json.dumps(item))
        return output

    def metric_names(self) -> set[str]:
        return {
            m["Name"]
            for line in self.metrics
            for directive in line["_aws"]["CloudWatchMetrics"]
            for m in directive["Metrics"]
        }

    def functions(self) -> set[str]:
        """The functions that logged (as their Lambda context names them)."""
        return {line["function_name"] for line in self.logs if "function_name" in line}


def check_metric_lines(lines: list[dict]) -> None:
    """Each EMF line: the namespace, and exactly the dimension set the registry gives its metrics."""
    assert lines
    for line in lines:
        directives = line["_aws"]["CloudWatchMetrics"]
        assert isinstance(line["_aws"]["Timestamp"], int)
        for directive in directives:
            assert directive["Namespace"] == telemetry.NAMESPACE, line
            names = [m["Name"] for m in directive["Metrics"]]
            assert set(names) <= telemetry.METRICS, line
            dimension_sets = {frozenset({"service", *telemetry.EXTRA_DIMENSIONS.get(n, ())}) for n in names}
            # One flush never mixes metrics of different dimension sets.
            assert len(dimension_sets) == 1, line
            (expected,) = dimension_sets
            assert [frozenset(d) for d in directive["Dimensions"]] == [expected], line
            assert all(len(d) == len(set(d)) for d in directive["Dimensions"]), line
            assert line["service"] == SERVICE
            for dimension in expected - {"service"}:
                # Low cardinality: the engine's fixed reason codes.
                assert re.fullmatch(r"[a-z][a-z0-9_]{0,40}", line[dimension]), line
            for name in names:
                values = line[name] if isinstance(line[name], list) else [line[name]]
                assert all(isinstance(v, int | float) and v >= 0 for v in values), line


def check_correlation(output: Output, job_id: str) -> None:
    """Every log line of this job's run carries its id as the correlation id."""
    assert output.logs, "no log line captured"
    for line in output.logs:
        assert line.get("correlation_id") == job_id, json.dumps(line)


# ------------------------------------------------------------------------------------- scenarios
HEADER = "thirdPartyId,tier,value\n"


def visitors(count: int, start: int = 1) -> bytes:
    return (HEADER + "".join(f"CRM-{i:06d},gold,{i}.50\n" for i in range(start, start + count))).encode()


@pytest.fixture
def token_secret(pipeline):
    """Target requires auth; the functions read the profile token from a Secrets Manager secret."""
    secrets = boto3.client("secretsmanager", region_name=REGION)
    name = "target-profile-sync/profile-token"

    def store(token: str) -> str:
        secrets.put_secret_value(SecretId=name, SecretString=json.dumps({"profile_token": token}))
        return token

    secrets.create_secret(Name=name, SecretString=json.dumps({"profile_token": "token-1"}))
    pipeline.emulator.configure(require_auth=True, valid_tokens={"token-1"})
    pipeline.setting(token_secret_id=name)
    return store


@dataclass
class Scenario:
    name: str
    job: dict
    output: Output


def test_the_scenarios_emit_every_registry_metric_in_its_namespace_and_dimensions(
    pipeline, token_secret, capsys, monkeypatch
):
    emulator = pipeline.emulator
    capsys.readouterr()
    scenarios: list[Scenario] = []

    def run(name: str, body: bytes, client: str, status: str, **kwargs: str) -> dict:
        result = pipeline.run(body, client=client, **kwargs)
        assert result.job["status"] == status, (name, result.job)
        scenarios.append(Scenario(name, result.job, Output.parse(capsys.readouterr().out)))
        return result.job

    # A clean file; Target's token is regenerated between the submit and the first poll, and the
    # step re-mints it from the rotated secret.
    emulator.configure(polls_until_complete=1)
    poll = bulk_step.poll_batch
    with monkeypatch.context() as patch:
        rotated: list[str] = []

        def poll_after_rotation(ports, item):
            if not rotated:
                rotated.append(token_secret(emulator.issue_token()))
            return poll(ports, item)

        patch.setattr(bulk_step, "poll_batch", poll_after_rotation)
        run("clean", visitors(5), "clean", "COMPLETE")
    assert rotated
    emulator.configure(polls_until_complete=0)

    # Bad and duplicate rows; the status answers 503, 500 and drops the connection.
    emulator.queue_faults("batchStatus", "503", "500", "drop")
    dirty = HEADER + "CRM-000001,gold,1\nCRM BAD,gold,2\nCRM-000003,gold,3\n\nCRM-000001,gold,4\n"
    run("bad and duplicate rows, Target faults", dirty.encode(), "dirty", "COMPLETE_WITH_ERRORS")

    # A file rejected as a whole.
    run("rejected file", b"visitor,tier\nCRM-000001,gold\n", "rejected", "REJECTED")

    # The daily quota: the second batch waits for the next UTC day.
    pipeline.setting(daily_row_quota=4, batch_max_rows=4)
    run("quota deferral", visitors(8), "quota", "COMPLETE")
    for name in ("DAILY_ROW_QUOTA", "BATCH_MAX_ROWS"):
        monkeypatch.delenv(name)

    # Batches that end without Target completing them.
    emulator.configure(stuck_share=1.0)
    run("stuck", visitors(3), "stuck", "COMPLETE_WITH_ERRORS")
    emulator.configure(stuck_share=0.0, seconds_until_complete=7200)
    pipeline.setting(poll_initial_delay_seconds=60, poll_max_delay_seconds=300, poll_deadline_seconds=600)
    run("deadline", visitors(3), "deadline", "COMPLETE_WITH_ERRORS")
    emulator.configure(seconds_until_complete=0, vanish_share=1.0, vanish_after_polls=0)
    run("vanished", visitors(3), "vanished", "COMPLETE_WITH_ERRORS")
    emulator.configure(vanish_share=0.0, max_rows=2)
    run("refused submit", visitors(3), "refused", "COMPLETE_WITH_ERRORS")
    emulator.configure(max_rows=500_000)
    # Target's token revoked and none stored: Target refuses the upload, the job fails.
    valid = emulator.config.valid_tokens
    emulator.revoke_token()
    run("submit gave up", visitors(3), "revoked", "FAILED")
    emulator.configure(valid_tokens=valid)

    # Single-update mode, the first update answered 500 (retried).
    for i in range(1, 4):
        emulator.store.put("single", "thirdPartyId", f"CRM-{i:06d}", {"tier": "silver"})
    emulator.queue_faults("update", "500")
    run("single update", visitors(3), "single", "COMPLETE", folders="api=single/")

    # The alert topic refuses every publish: the notices are lost and counted, the status holds.
    sns = boto3.client("sns", region_name=REGION)
    sns.delete_topic(TopicArn=pipeline.stack.topic_arn)
    run("alert topic gone", dirty.encode(), "silent", "COMPLETE_WITH_ERRORS")
    sns.create_topic(Name=pipeline.stack.topic_arn.rsplit(":", 1)[1])

    # A batch's step raises: the batch is recorded on its own (pending), the job goes on.
    with monkeypatch.context() as patch:

        def broken_poll(ports, item):
            raise RuntimeError("disk on fire")

        patch.setattr(bulk_step, "poll_batch", broken_poll)
        run("batch step failure", visitors(3), "failing", "COMPLETE_WITH_ERRORS")

    # Finalize raises: the workflow's last resort fails the job.
    with monkeypatch.context() as patch:

        def broken(ports, job_id, failure=None):
            raise RuntimeError("disk on fire")

        patch.setattr(report_step, "finalize_job", broken)
        run("step failure", visitors(3), "failing", "FAILED")

    # Every metric of the registry, and nothing else.
    everything = Output.parse("\n".join(s.output.text for s in scenarios))
    assert everything.metric_names() == telemetry.METRICS
    check_metric_lines(everything.metrics)
    by_scenario = {s.name: s.output.metric_names() for s in scenarios}
    assert telemetry.FILES_REJECTED in by_scenario["rejected file"]
    assert telemetry.QUOTA_DEFERRED in by_scenario["quota deferral"]
    assert telemetry.TARGET_REAUTHENTICATIONS in by_scenario["clean"]
    assert {
        telemetry.TARGET_THROTTLED,
        telemetry.TARGET_SERVER_ERRORS,
        telemetry.TARGET_TRANSPORT_ERRORS,
    } <= (by_scenario["bad and duplicate rows, Target faults"])
    assert telemetry.BATCHES_FAILED in by_scenario["refused submit"]
    assert telemetry.BATCHES_FAILED in by_scenario["submit gave up"]
    assert telemetry.JOBS_FAILED in by_scenario["submit gave up"]
    assert telemetry.JOBS_FAILED in by_scenario["step failure"]
    assert telemetry.NOTIFICATIONS_FAILED in by_scenario["alert topic gone"]
    assert telemetry.NOTIFICATIONS_FAILED not in by_scenario["step failure"]

    # Every log line of every step carries its job's id; every function logged.
    for scenario in scenarios:
        check_correlation(scenario.output, scenario.job["jobId"])
        assert not scenario.output.other, scenario.output.other
    assert everything.functions() == WORKFLOW_FUNCTIONS | {"profile-sync-ingest"}
    # The Logs Insights widget finds rejected files and batches that did not complete.
    assert any(line.get("status") == "REJECTED" and line.get("reason") for line in everything.logs)
    ends = {line["end"] for line in everything.logs if "end" in line}
    assert {"complete", "stuck", "deadline", "vanished", "submit_failed"} <= ends


# ------------------------------------------------------------------------------------- personal data
TOKEN = "ZZTOKEN-c0ffee"
VALUE = "ZZVALUE-Marguerite-9731"
# Loggers of the project and of Powertools (moto's and botocore's debug logs are the emulators').
# The product's loggers (the emulator's, in profile_sync_local, stand for Target and may see values).
OUR_LOGGERS = ("profile_sync.", "profile-sync", "aws_lambda_powertools")
RECOGNISABLE = ("ZZID", "ZZVALUE", "Marguerite", "ZZTOKEN", "c0ffee")


def visitor(i: int) -> str:
    return f"ZZID-4242-{i:04d}"


def recognisable_file(count: int) -> bytes:
    rows = "".join(f"{visitor(i)},{VALUE}-{i},{VALUE}%20city\n" for i in range(1, count + 1))
    rejected = f"ZZID 4242 BAD,{VALUE}-rejected,x\n"  # an invalid id: the line goes to the rejects
    duplicate = f"{visitor(2)},{VALUE}-again,y\n"
    return ("thirdPartyId,nickname,city\n" + rows + rejected + duplicate).encode()


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [word for word in RECOGNISABLE if word.lower() in lowered]


def record_text(record: logging.LogRecord) -> str:
    """A stdlib log record as Lambda would write it: the message and every extra field."""
    return record.getMessage() + " " + " ".join(f"{k}={v!r}" for k, v in vars(record).items())


def test_recognisable_ids_values_and_token_reach_no_log_metric_or_message(
    pipeline, capsys, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG)  # whatever reaches Python logging besides stdout
    emulator = pipeline.emulator
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name="profile-token", SecretString=json.dumps({"profile_token": TOKEN}))
    pipeline.setting(token_secret_id="profile-token", batch_max_rows=3, daily_row_quota=6)
    emulator.configure(require_auth=True, valid_tokens={TOKEN}, fail_ids={visitor(1), visitor(5)})
    # Target refuses the token once (the step re-mints it from the secret), answers 503 once, and
    # drops a status connection.
    emulator.queue_faults("batchUpdate", "401", "503")
    emulator.queue_faults("batchStatus", "drop")
    capsys.readouterr()

    # Bulk: 8 rows in 3 batches, one waits for the quota; two ids fail in Target.
    bulk = pipeline.run(recognisable_file(8), name="bulk.csv")
    assert bulk.job["status"] == "COMPLETE_WITH_ERRORS", bulk.job
    assert (bulk.job["rejected"], bulk.job["failed"]) == (1, 2)
    assert any(b.get("quotaWaitSeconds") for b in bulk.batches), bulk.batches

    # Single update: values travel in the request; one update is refused twice (a new token from
    # the secret does not help): the job stops, the rows not sent are pending.
    for i in range(1, 5):
        emulator.store.put("acme", "thirdPartyId", visitor(i), {"nickname": "old"})
    emulator.queue_faults("update", "403", "403", "500")
    pipeline.setting(single_update_concurrency=1)  # one update at a time: the faults meet one row
    single = pipeline.run(recognisable_file(4), name="single.csv", folders="api=single/")
    assert single.job["status"] == "FAILED", single.job
    assert single.job["failed"] == 1, single.job

    # Target no longer takes the token, and the secret holds no other: the job fails.
    emulator.revoke_token()
    refused = pipeline.run(recognisable_file(2), name="refused.csv", client="other")
    assert refused.job["status"] == "FAILED", refused.job
    assert refused.batches[0]["status"] == "AUTH_FAILED"
    emulator.configure(valid_tokens={TOKEN})

    # A stuck batch and a step failure.
    emulator.configure(stuck_share=1.0)
    stuck = pipeline.run(recognisable_file(2), name="stuck.csv", client="other")
    assert stuck.job["status"] == "COMPLETE_WITH_ERRORS", stuck.job
    emulator.configure(stuck_share=0.0)
    with monkeypatch.context() as patch:

        def broken_poll(ports, item):
            raise RuntimeError("disk on fire")

        patch.setattr(bulk_step, "poll_batch", broken_poll)
        lost = pipeline.run(recognisable_file(2), name="lost.csv", client="other")
    assert lost.job["status"] == "COMPLETE_WITH_ERRORS", lost.job
    with monkeypatch.context() as patch:

        def broken(ports, job_id, failure=None):
            raise RuntimeError("disk on fire")

        patch.setattr(report_step, "finalize_job", broken)
        failed = pipeline.run(recognisable_file(2), name="failed.csv", client="other")
    assert failed.job["status"] == "FAILED", failed.job

    # A file rejected as a whole (its rows hold values), and a job whose execution was aborted.
    rejected = pipeline.run(
        b"thirdPartyId\n" + f"{visitor(1)}\n".encode(), name="rejected.csv", client="other"
    )
    assert rejected.job["status"] == "REJECTED", rejected.job
    aborted = pipeline.ingest(recognisable_file(2), name="aborted.csv", client="other")
    event = json.loads(event_path("execution_alert_execution_aborted.json").read_text())
    event["detail"].update(name=aborted["jobId"], status="ABORTED")
    alert = load_function("execution_alert").lambda_handler(event, FakeContext())
    assert alert == {"jobId": aborted["jobId"], "notified": True}

    captured = capsys.readouterr()
    output = Output.parse(captured.out)
    messages = pipeline.messages()

    # The capture holds what it should (so the test cannot pass by capturing nothing) ...
    jobs = {r.job["jobId"] for r in (bulk, single, refused, stuck, lost, failed, rejected)} | {
        aborted["jobId"]
    }
    assert {line.get("correlation_id") for line in output.logs} == jobs
    said = {line["message"] for line in output.logs}
    assert {
        "ingest finished",
        "quota decision",
        "batch submitted",
        "batch ended",
        "single-update chunk",
        "batch ended without Target's answer",
        "job failed",
        "job finished",
        "execution ended without a final job status",
    } <= said, said
    assert output.metric_names() >= {telemetry.ROWS_FAILED, telemetry.TARGET_REAUTHENTICATIONS}
    # The Target client's own lines are JSON on stdout too, with the job id (the handlers give the
    # package's logger their handler).
    reminted = [line for line in output.logs if "re-minting" in line["message"]]
    assert reminted and all(line["correlation_id"] in jobs for line in reminted)
    subjects = [m.get("Subject", "") for m in messages]
    assert len(messages) >= 5, subjects
    assert any(aborted["jobId"] in m["Message"] and "aborted.csv" in m["Message"] for m in messages)
    # ... and the reports do hold the ids and lines (they are the deliverable, not a leak).
    report = pipeline.read(bulk.job["reportRowsKey"]).decode()
    assert visitor(1) in report and visitor(5) in report
    assert any(VALUE in pipeline.read(key).decode() for key in _rejects_keys(pipeline, bulk.job["jobId"]))

    # None of the recognisable strings is in a log line, a metric or a message.
    assert leaks(captured.out) == [], [line for line in captured.out.splitlines() if leaks(line)]
    assert leaks(captured.err) == []
    ours = [r for r in caplog.records if r.name.startswith(OUR_LOGGERS)]
    found = [record_text(r) for r in ours if leaks(record_text(r))]
    assert found == []
    found = [m for m in messages if leaks(json.dumps(m))]
    assert found == []


def _rejects_keys(pipeline, job_id: str) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    listed = s3.list_objects_v2(Bucket=pipeline.stack.bucket, Prefix=f"jobs/{job_id}/")
    return [o["Key"] for o in listed.get("Contents", []) if "reject" in o["Key"]]


def test_a_file_without_a_header_leaves_its_first_visitor_id_out_of_logs_and_messages(pipeline, capsys):
    capsys.readouterr()
    job = pipeline.ingest(f"{visitor(1)},{VALUE}\n{visitor(2)},{VALUE}\n".encode(), name="noheader.csv")
    assert job["status"] == "REJECTED"
    output = capsys.readouterr().out
    messages = pipeline.messages()
    assert any("ingest finished" in line for line in output.splitlines())
    assert len(messages) == 1 and "rejected" in messages[0]["Subject"]
    assert leaks(output) == []
    assert [m for m in messages if leaks(json.dumps(m))] == []
