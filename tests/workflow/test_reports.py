"""Reports that survive any row, and notices that are best-effort (issue 11, items 3 and 5).

The whole pipeline (ingest, the real ASL, the step handlers, the Target emulator, S3/DynamoDB/SNS
in moto): a rejected row past the csv module's field limit, ids that a spreadsheet would run, an
alert topic that refuses to publish; and the report's memory against the number of rows.
"""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from dataclasses import replace
from pathlib import Path

import boto3

from profile_sync.aws.notify import SnsNotifier
from profile_sync.aws.ports import quota_ports
from profile_sync.outcomes import REPORT_COLUMNS
from profile_sync.quota import QuotaDecision
from profile_sync.workflow import quota as quota_step
from profile_sync.workflow import report
from profile_sync.workflow.batch_end import RecordPorts, upload_lines
from profile_sync_local.stack.aws_server import REGION
from tests.conftest import AlertInbox

# Accepted as a pcId in encoded mode as it is (a leading "=" is written %3D, so it starts no formula).
FORMULA = "-cmd|'/Ccalc'!A0"
REJECTED_FORMULA = "=cmd|'/Ccalc'!A0 x"  # a raw space: rejected, its line kept in rejects.csv
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def cells(rows: list[dict]) -> list[str]:
    return [value for row in rows for value in row.values()]


def test_a_huge_rejected_row_and_formula_ids_make_a_readable_spreadsheet_safe_report(pipeline):
    pipeline.emulator.configure(fail_ids={FORMULA})
    huge = "5," + "x y" * 100_000  # 300 KB: past the csv module's 128 KB field limit when kept whole
    body = f"pcId,tier\n{FORMULA},gold\n2,silver\n{REJECTED_FORMULA},gold\n{huge}\n@7,bronze\n".encode()

    run = pipeline.run(body)

    # Before: finalize failed on reading rejects.csv ("field larger than field limit"): FAILED.
    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    assert (run.job["succeeded"], run.job["failed"], run.job["rejected"]) == (2, 1, 2)
    rows = pipeline.report_rows(run.job)
    assert list(rows[0]) == list(REPORT_COLUMNS)
    by_line = {int(r["line"]): r for r in rows}
    assert by_line[2]["id"] == "'" + FORMULA and by_line[2]["outcome"] == "failed"
    assert by_line[4]["id"] == "'" + REJECTED_FORMULA and by_line[4]["outcome"] == "rejected"
    assert by_line[5]["id"] == "5" and by_line[5]["reason"].startswith("invalid_encoding")
    assert not any(cell.startswith(TRIGGERS) for cell in cells(rows))
    # rejects.csv keeps the huge line cut, and says how much is missing.
    rejects = list(csv.DictReader(io.StringIO(pipeline.read(run.job["rejectsKey"]).decode())))
    assert rejects[1]["original"].endswith(f"…[cut: {len(huge) - 4096:,} bytes]")


def test_the_single_update_report_keeps_the_guard_on_ids(pipeline):
    pipeline.setting(single_update_concurrency=1)
    # The first update (the formula id) is answered 500 to every try: not accepted, failed.
    # (A 403 would stop the job: an authentication failure.)
    pipeline.emulator.queue_faults("update", *["500"] * 5)
    body = f"pcId,tier\n{FORMULA},gold\n2,silver\n".encode()

    run = pipeline.run(body, folders="api=single/")

    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    [row] = pipeline.report_rows(run.job)
    assert (row["line"], row["id"], row["outcome"]) == ("2", "'" + FORMULA, "failed")
    assert not any(cell.startswith(TRIGGERS) for cell in row.values())


def test_a_publish_failure_never_changes_the_status_and_is_logged_and_counted(pipeline, capsys):
    sns = boto3.client("sns", region_name=REGION)
    sns.delete_topic(TopicArn=pipeline.stack.topic_arn)  # every publish now fails: NotFound
    body = b"thirdPartyId,tier\nCRM-000001,gold\nCRM BAD,silver\n"

    run = pipeline.run(body)

    # Before: finalize's publish raised, and JobFailed turned COMPLETE_WITH_ERRORS into FAILED.
    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    assert pipeline.summary(run.job)["status"] == "COMPLETE_WITH_ERRORS"
    out = capsys.readouterr().out
    logged = [json.loads(line) for line in out.splitlines() if "notification not published" in line]
    assert logged and logged[0]["error_code"] == "NotFound"
    assert f"job {run.job['jobId']} COMPLETE_WITH_ERRORS" in logged[0]["subject"]
    assert '"NotificationsFailed"' in out
    for value in ("CRM-000001", "CRM BAD", "gold", "silver"):
        assert value not in "\n".join(json.dumps(line) for line in logged)


def test_the_quota_wait_notice_is_marked_sent_only_once_published(pipeline):
    job = pipeline.ingest(b"thirdPartyId,tier\nCRM-000001,gold\n")
    item = {"jobId": job["jobId"], "clientCode": "acme", "batch": {"batchIndex": 1, "rows": 1}}
    decision = QuotaDecision(False, 3600, 10, 10, "2026-11-28")
    sns = boto3.client("sns", region_name=REGION)
    topic = pipeline.stack.topic_arn
    ports = replace(quota_ports(), notifier=SnsNotifier(topic))

    sns.delete_topic(TopicArn=topic)
    quota_step.note_quota_wait(ports.jobs, ports.notifier, item, decision)
    assert not pipeline.job(job["jobId"]).get("quotaWaitNotified")  # before: marked, never sent

    assert sns.create_topic(Name=topic.rsplit(":", 1)[1])["TopicArn"] == topic
    inbox = AlertInbox(topic)
    quota_step.note_quota_wait(ports.jobs, ports.notifier, item, decision)
    quota_step.note_quota_wait(ports.jobs, ports.notifier, item, decision)
    assert pipeline.job(job["jobId"])["quotaWaitNotified"] is True
    assert [m["Subject"] for m in inbox.messages()] == [
        f"target-profile-sync: job {job['jobId']} waits for the daily quota"
    ]


# ------------------------------------------------------------------------------------- memory
class LocalObjects:
    """The report's reads and its one upload, on local files (S3 itself is not what is measured)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploaded: dict[str, int] = {}

    def open(self, key: str):
        return (self.root / key).open("rb")

    def list_keys(self, prefix: str) -> list[str]:
        return []

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        self.uploaded[key] = path.stat().st_size


def report_peak(tmp_path: Path, rejected: int) -> tuple[int, int]:
    """Peak traced memory of writing rows.csv for a job with `rejected` listed rejected rows."""
    root = tmp_path / str(rejected)
    (root / "jobs").mkdir(parents=True)
    with (root / "jobs" / "rejects.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["line", "reason", "detail", "original"])
        for i in range(rejected):
            writer.writerow([i + 2, "invalid_encoding", "field 2 (a): raw space (write %20)", f"id-{i},a b"])
    objects = LocalObjects(root)
    ports = RecordPorts(objects=objects, jobs=None, now=lambda: 0.0)
    job = {"jobId": "j", "rejectsKey": "jobs/rejects.csv"}
    tracemalloc.start()
    try:
        upload_lines(objects, "rows.csv", report._report_rows(ports, job), header=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, objects.uploaded["rows.csv"]


def test_the_report_streams_its_memory_stays_flat_in_the_number_of_rows(tmp_path):
    small, small_size = report_peak(tmp_path, 20_000)
    large, large_size = report_peak(tmp_path, 200_000)
    assert large_size > 9 * small_size
    # Before: every rejected row was held in one StringIO (a peak of ~2x the report's size).
    assert large < 2 * 1024 * 1024, large
    assert large < small * 1.5 + 256 * 1024, (small, large)
