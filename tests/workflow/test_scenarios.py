"""The real state machine under the scenarios of issue 4: quota, Target's faults, v1, single update,
failures inside steps. Every test checks the rows add up:
received = rejected + skipped + succeeded + failed + not_found + pending."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime

import boto3
import pytest
from moto.stepfunctions.parser.asl.component.state import state as moto_state

from profile_sync.aws.jobs import plain
from profile_sync.aws.ports import quota_ports
from profile_sync.model import ACCOUNT_FIELDS
from profile_sync.settings import Settings
from profile_sync.workflow import bulk
from profile_sync.workflow import quota as quota_step
from profile_sync_local.stack.aws_server import REGION
from profile_sync_local.stack.workflow import run_workflow
from tests.workflow.conftest import CLIENT, START, Run

ACCOUNT = ACCOUNT_FIELDS  # received, rejected, skipped, unchanged, succeeded, failed, not_found, pending
HEADER = "thirdPartyId,tier,value,city\n"


def visitor_id(i: int) -> str:
    return f"CRM-{i:06d}"


def visitors(count: int, start: int = 1) -> bytes:
    rows = "".join(f"{visitor_id(i)},gold,{i}.50,M%C3%BCnchen\n" for i in range(start, start + count))
    return (HEADER + rows).encode()


def source_line(body: bytes, visitor: str) -> int:
    """The 1-based line of the source file that holds this visitor id."""
    for number, line in enumerate(body.decode().splitlines(), start=1):
        if line.split(",", 1)[0] == visitor:
            return number
    raise AssertionError(f"{visitor} not in the file")


def assert_accounted(pipeline, run_or_job) -> dict:
    """The identity holds on the job record and in the summary, and the two agree."""
    job = run_or_job.job if isinstance(run_or_job, Run) else run_or_job
    counts = {name: job[name] for name in ACCOUNT}
    assert counts["received"] == sum(counts[name] for name in ACCOUNT[1:]), counts
    summary = pipeline.summary(job)
    assert summary["account"] == counts
    # Each batch's counts cover its rows exactly.
    for batch in summary["batches"]:
        assert sum(batch["counts"].values()) == batch["rows"], batch
    return counts


def report_by_line(pipeline, job: dict) -> dict[int, dict]:
    rows = pipeline.report_rows(job)
    by_line = {int(r["line"]): r for r in rows}
    assert len(by_line) == len(rows), "a source line is listed twice"
    return by_line


def quota_items(pipeline) -> dict[str, dict]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(pipeline.stack.jobs_table)
    items = table.query(
        KeyConditionExpression=boto3.dynamodb.conditions.Key("pk").eq(f"QUOTA#{CLIENT}"),
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]: plain(item) for item in items}


def run_job(pipeline, job: dict) -> Run:
    """Run the workflow of a job ingested earlier (so a test can interfere in between)."""
    execution = run_workflow(pipeline.execution_input(job), clock=pipeline.clock)
    return Run(pipeline.job(job["jobId"]), execution, pipeline.batches(job["jobId"]))


def subjects(messages: list[dict]) -> list[str]:
    return [m.get("Subject", "") for m in messages]


@pytest.fixture
def states_entered(monkeypatch):
    """States entered, by batch index (None: the parent execution's states).

    moto runs a Distributed Map's child executions without exposing their histories, so count
    where every state starts: the state's input names the batch inside the Map."""
    seen: dict[int | None, Counter] = defaultdict(Counter)
    original = moto_state.CommonStateField._eval_body

    def counting(self, env):
        data = env.states.get_input()
        batch = data.get("batch") if isinstance(data, dict) else None
        index = batch.get("batchIndex") if isinstance(batch, dict) else None
        seen[index][self.name] += 1
        return original(self, env)

    monkeypatch.setattr(moto_state.CommonStateField, "_eval_body", counting)
    return seen


@pytest.fixture
def token_secret(pipeline):
    """Target requires auth; the functions read the profile token from a Secrets Manager secret."""
    secrets = boto3.client("secretsmanager", region_name=REGION)
    name = "target-profile-sync/profile-token"
    secrets.create_secret(Name=name, SecretString=json.dumps({"profile_token": "token-1"}))
    pipeline.emulator.configure(require_auth=True, valid_tokens={"token-1"})
    pipeline.setting(token_secret_id=name)

    def rotate() -> str:
        """An admin generates a new token in Target (the old one dies) and stores it in the secret."""
        token = pipeline.emulator.issue_token()
        secrets.put_secret_value(SecretId=name, SecretString=json.dumps({"profile_token": token}))
        return token

    return rotate


# ------------------------------------------------------------------------------------- happy path
def test_happy_path_multi_batch_job_completes_and_matches_the_profile_store(pipeline, states_entered):
    pipeline.setting(batch_max_rows=4)
    pipeline.emulator.configure(polls_until_complete=1)  # one "incomplete" answer, then complete
    body = visitors(10)

    run = pipeline.run(body)

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE"
    counts = assert_accounted(pipeline, run)
    assert counts == dict(zip(ACCOUNT, (10, 0, 0, 0, 10, 0, 0, 0), strict=True))
    assert [b["rows"] for b in run.batches] == [4, 4, 2]
    assert [b["status"] for b in run.batches] == ["COMPLETE"] * 3
    assert all(b["statusUrl"] and b["submitAttempts"] == 1 for b in run.batches)
    # The report lists no row (every row succeeded) and Target's store holds every row's values.
    assert pipeline.report_rows(run.job) == []
    for i in range(1, 11):
        assert pipeline.emulator.store.get(CLIENT, "thirdPartyId", visitor_id(i)) == {
            "tier": "gold",
            "value": f"{i}.50",
            "city": "München",
        }
    assert pipeline.emulator.store.count(CLIENT) == 10
    assert pipeline.messages() == []  # nothing for a person to do

    # The figures: Target calls and state transitions per batch.
    calls = pipeline.emulator.calls
    assert calls["batchUpdate"] == 3 and calls["batchStatus"] == 3 * 2
    per_batch = {index: sum(c.values()) for index, c in states_entered.items() if index is not None}
    assert set(per_batch) == {1, 2, 3}
    assert len(set(per_batch.values())) == 1
    expected_states = {
        "ChooseApi": 1,
        "ReserveQuota": 1,
        "QuotaGranted?": 1,
        "SubmitBatch": 1,
        "Submitted?": 1,
        "WaitBeforePoll": 2,
        "PollStatus": 2,
        "Finished?": 2,
        "BatchDone": 1,
    }
    assert all(dict(c) == expected_states for i, c in states_entered.items() if i is not None)
    parent = sum(states_entered[None].values())
    # After Finalize, the landing check (on by default: 20 sampled rows, so all 10 here): its first
    # call draws the sample, the Wait gives Target time to apply, the second reads every profile
    # back. Each of these states is one more transition of the parent.
    assert dict(states_entered[None]) == {
        "SendBatches": 1,
        "Finalize": 1,
        "StartLandingCheck": 1,
        "CheckLanding?": 1,
        "CheckLanding": 2,
        "Landed?": 2,
        "WaitBeforeLandingCheck": 1,
        "Done": 1,
    }
    assert parent == run.execution.state_transitions == 10
    assert run.job["landingCheck"] == {
        "status": "DONE",
        "sampled": 10,
        "eligible": 10,
        "verified": 10,
        "mismatched": 0,
        "notVisible": 0,
        "unchecked": 0,
        "rounds": 1,
    }
    assert calls["profiles"] == 10  # one fetch per sampled profile, every one verified at the first read
    print(
        "\nhappy path, 3 batches (4+4+2 rows), Target answering incomplete once then complete:"
        f"\n  parent execution: {parent} state transitions {dict(states_entered[None])}"
        f"\n  per batch: {per_batch[1]} state transitions {expected_states}"
        f"\n  total: {parent + sum(per_batch.values())} state transitions"
        f"\n  Lambda invocations: {run.execution.invocations}"
        f"\n  Target calls: {dict(calls)} -> per batch: 1 batchUpdate + 2 batchStatus"
        f"\n  simulated {run.execution.simulated_seconds:.0f}s, real {run.execution.real_seconds:.2f}s"
    )


# ------------------------------------------------------------------------------------- quota
def test_two_jobs_over_the_daily_quota_defer_one_batch_to_the_next_utc_day(pipeline):
    pipeline.setting(batch_max_rows=4, daily_row_quota=10)
    first = pipeline.run(visitors(6), name="first.csv")  # batches of 4 + 2: 6 of 10 used
    second = pipeline.run(visitors(8, start=101), name="second.csv")  # 4 + 4: only one fits today

    for run in (first, second):
        assert run.execution.status == "SUCCEEDED", run.execution.describe()
        assert run.job["status"] == "COMPLETE"
        assert_accounted(pipeline, run)
    assert second.job["succeeded"] == 8
    # One batch of the second job went today, the other after midnight UTC.
    days = sorted(b["submittedAt"][:10] for b in second.batches)
    assert days == ["2026-11-28", "2026-11-29"]
    deferred = next(b for b in second.batches if b["submittedAt"].startswith("2026-11-29"))
    assert deferred["quotaWaitSeconds"] > 0
    assert datetime.fromisoformat(deferred["submittedAt"]) >= datetime(2026, 11, 29, tzinfo=UTC)
    assert pipeline.clock.datetime().date() > START.date()
    assert second.execution.invocations["ReserveQuota"] == 3  # 2 batches + 1 retry after the wait
    # Never over the limit, each reservation counted once.
    quota = quota_items(pipeline)
    assert quota["2026-11-28"]["used"] == 10
    assert len(quota["2026-11-28"]["reservations"]) == 3
    assert quota["2026-11-29"]["used"] == 4
    assert quota["2026-11-29"]["reservations"] == {f"{second.job['jobId']}#{deferred['batchIndex']}"}
    # One message, about the wait, naming the job (no profile values).
    messages = pipeline.messages()
    assert len(messages) == 1, subjects(messages)
    assert "waits for the daily quota" in messages[0]["Subject"]
    assert second.job["jobId"] in messages[0]["Message"] and "10 of 10 rows" in messages[0]["Message"]
    assert "gold" not in messages[0]["Message"]

    # A reservation retried (the step called again for the same batch) is found, not counted again.
    ports = replace(quota_ports(), now=pipeline.clock.now)
    item = {"jobId": second.job["jobId"], "clientCode": CLIENT, "batch": deferred}
    for _ in range(2):
        decision = quota_step.reserve_quota(ports, item)
        assert decision == {
            "granted": True,
            "waitSeconds": 0,
            "used": 4,
            "limit": 10,
            "window": "2026-11-29",
        }
    assert quota_items(pipeline)["2026-11-29"]["used"] == 4


# ------------------------------------------------------------------------------------- Target faults
def test_a_503_storm_on_submit_is_retried_by_the_workflow(pipeline):
    pipeline.emulator.queue_faults("batchUpdate", *["503"] * 5)  # 3 in the first try, 2 in the next

    run = pipeline.run(visitors(5))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE"
    assert assert_accounted(pipeline, run)["succeeded"] == 5
    assert run.execution.invocations["SubmitBatch"] == 2
    assert run.batches[0]["submitAttempts"] == 3
    assert pipeline.emulator.calls["batchUpdate"] == 6
    assert pipeline.emulator.store.count(CLIENT) == 5


def test_5xx_on_submit_that_never_ends_fails_the_batch_with_its_reason(pipeline):
    pipeline.setting(batch_max_rows=3)
    body = visitors(5)
    pipeline.emulator.configure(error_500_share=1.0)

    run = pipeline.run(body)

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    counts = assert_accounted(pipeline, run)
    assert (counts["failed"], counts["succeeded"]) == (5, 0)
    assert [b["status"] for b in run.batches] == ["SUBMIT_FAILED"] * 2
    # Each batch: 1 try + 10 retries of the state machine, 3 HTTP attempts each.
    assert run.execution.invocations["SubmitBatch"] == 22
    assert pipeline.emulator.calls["batchUpdate"] == 66
    rows = report_by_line(pipeline, run.job)
    assert sorted(rows) == [2, 3, 4, 5, 6]
    for line, row in rows.items():
        assert row["id"] == visitor_id(line - 1) and row["outcome"] == "failed"
        # The calls counted are the calls made (33 per batch), and no wording of a single try.
        assert (
            row["reason"]
            == "Target did not accept the batch: 33 call(s) to batchUpdate, the last answered HTTP 500"
        )
    messages = pipeline.messages()
    assert subjects(messages) == [f"target-profile-sync: job {run.job['jobId']} COMPLETE_WITH_ERRORS"]
    assert "failed 5" in messages[0]["Message"]


def test_5xx_and_503_on_status_are_polled_through(pipeline):
    # A whole poll fails (3 attempts: 503, 500, 503), the next one gets through on its third try.
    pipeline.emulator.queue_faults("batchStatus", "503", "500", "503", "500", "drop")

    run = pipeline.run(visitors(5))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE"
    assert assert_accounted(pipeline, run)["succeeded"] == 5
    assert run.batches[0]["polls"] == 2
    assert run.execution.invocations["PollBatch"] == 2
    assert pipeline.emulator.calls["batchStatus"] == 6


def test_a_revoked_token_is_replaced_from_the_rotated_secret_mid_run(pipeline, token_secret, monkeypatch):
    pipeline.setting(batch_max_rows=4)
    pipeline.emulator.configure(polls_until_complete=1)
    poll = bulk.poll_batch
    rotated = []
    lock = threading.Lock()

    def poll_after_rotation(ports, item):
        with lock:  # between submit and the first poll, an admin regenerates the token, once
            if not rotated:
                rotated.append(token_secret())
        return poll(ports, item)

    monkeypatch.setattr(bulk, "poll_batch", poll_after_rotation)

    run = pipeline.run(visitors(6))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE"
    assert assert_accounted(pipeline, run)["succeeded"] == 6
    refused = [r for r in pipeline.emulator.requests if r["status"] == 401]
    assert refused and all(r["authorized"] for r in pipeline.emulator.requests)
    assert pipeline.emulator.config.valid_tokens == frozenset(rotated)


def test_a_revoked_token_that_cannot_be_replaced_fails_the_job_naming_authentication(pipeline, token_secret):
    pipeline.emulator.revoke_token()  # and nobody stores a new one

    run = pipeline.run(visitors(3))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "FAILED"
    reason = run.job["reason"]
    assert reason.startswith("Target refused authentication: HTTP 401 from POST http://127.0.0.1:")
    assert "/m2/acme/v2/profile/batchUpdate after one token refresh" in reason
    # Target refused the upload before taking it: its rows failed, with the reason; the report exists.
    assert assert_accounted(pipeline, run)["failed"] == 3
    batch = run.batches[0]
    assert batch["status"] == "AUTH_FAILED" and batch["reason"] == reason
    assert run.execution.invocations["SubmitBatch"] == 1  # no retry: a new token was already tried
    assert [r["status"] for r in pipeline.emulator.requests] == [401, 401]  # the call, and one re-mint
    assert {r["outcome"] for r in pipeline.report_rows(run.job)} == {"failed"}
    assert pipeline.summary(run.job)["status"] == "FAILED"
    assert pipeline.emulator.store.count(CLIENT) == 0
    messages = pipeline.messages()
    assert subjects(messages) == [f"target-profile-sync: job {run.job['jobId']} FAILED"]
    assert "Reason: Target refused authentication: HTTP 401" in messages[0]["Message"]


def test_a_stuck_batch_fails_its_rows_with_the_reason(pipeline):
    pipeline.emulator.configure(stuck_share=1.0)

    run = pipeline.run(visitors(4))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    assert assert_accounted(pipeline, run)["failed"] == 4
    assert run.batches[0]["status"] == "STUCK"
    rows = report_by_line(pipeline, run.job)
    assert sorted(rows) == [2, 3, 4, 5]
    assert {(r["outcome"], r["reason"]) for r in rows.values()} == {
        ("failed", "Target reported the batch stuck: it will not complete")
    }


def test_a_vanished_status_leaves_the_rows_pending(pipeline):
    pipeline.emulator.configure(vanish_share=1.0, vanish_after_polls=0)

    run = pipeline.run(visitors(4))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    assert assert_accounted(pipeline, run)["pending"] == 4
    batch = run.batches[0]
    assert (batch["status"], batch["polls"]) == ("VANISHED", Settings().vanished_after_polls)
    rows = report_by_line(pipeline, run.job)
    assert {(r["outcome"], r["reason"]) for r in rows.values()} == {
        ("pending", "Target no longer reports a status for this batch")
    }
    assert "pending 4" in pipeline.messages()[0]["Message"]


def test_the_polling_deadline_leaves_the_rows_pending(pipeline):
    pipeline.setting(poll_initial_delay_seconds=60, poll_max_delay_seconds=300, poll_deadline_seconds=600)
    pipeline.emulator.configure(seconds_until_complete=7200)

    run = pipeline.run(visitors(4))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    assert assert_accounted(pipeline, run)["pending"] == 4
    batch = run.batches[0]
    # Polls at 60, 120, 180, 240, 300, 375, 468, 585 (each wait a quarter of the time since the
    # submit) and 600 s (the wait cut to the deadline).
    assert (batch["status"], batch["polls"]) == ("DEADLINE", 9)
    elapsed = datetime.fromisoformat(batch["endedAt"]) - datetime.fromisoformat(batch["submittedAt"])
    assert elapsed.total_seconds() == 600
    rows = report_by_line(pipeline, run.job)
    assert {(r["outcome"], r["reason"]) for r in rows.values()} == {
        ("pending", "polling deadline reached before Target completed the batch")
    }
    messages = pipeline.messages()
    assert len(messages) == 1 and "pending 4" in messages[0]["Message"]


def test_failed_rows_are_mapped_to_their_source_lines(pipeline):
    pipeline.setting(batch_max_rows=3)
    body = (
        HEADER
        + "CRM-000001,gold,1,x\n"
        + "CRM BAD,gold,2,x\n"  # rejected at validation: shifts every later line
        + "CRM-000003,gold,3,x\n"
        + "\n"  # a blank line
        + "CRM-000005,gold,5,x\n"
        + "CRM-000006,gold,6,x\n"
        + "CRM-000007,gold,7,x\n"
        + "CRM-000008,gold,8,x\n"
    ).encode()
    pipeline.emulator.configure(fail_ids={"CRM-000003", "CRM-000007"})

    run = pipeline.run(body)

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    counts = assert_accounted(pipeline, run)
    assert (counts["rejected"], counts["failed"]) == (1, 2)
    assert counts["succeeded"] == counts["received"] - counts["rejected"] - counts["skipped"] - 2
    rows = report_by_line(pipeline, run.job)
    failed = {line: r for line, r in rows.items() if r["outcome"] == "failed"}
    assert {line: r["id"] for line, r in failed.items()} == {
        source_line(body, "CRM-000003"): "CRM-000003",
        source_line(body, "CRM-000007"): "CRM-000007",
    }
    assert {r["reason"] for r in failed.values()} == {"Target reported the update failed"}
    assert [r["outcome"] for line, r in rows.items() if line == source_line(body, "CRM BAD")] == ["rejected"]
    # The report and Target's store agree: failed rows have no profile, the others do.
    for i in (1, 5, 6, 8):
        assert pipeline.emulator.store.get(CLIENT, "thirdPartyId", visitor_id(i)) is not None
    for i in (3, 7):
        assert pipeline.emulator.store.get(CLIENT, "thirdPartyId", visitor_id(i)) is None


# ------------------------------------------------------------------------------------- v1 and single
def test_v1_counts_unknown_ids_as_not_found(pipeline):
    pipeline.setting(batch_max_rows=4)
    known = {1, 2, 5, 8, 9}
    for i in known:
        pipeline.emulator.store.put(CLIENT, "thirdPartyId", visitor_id(i), {"tier": "silver"})

    run = pipeline.run(visitors(10), folders="api=v1/")

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["apiVersion"] == "v1"
    assert pipeline.emulator.calls["batchUpdate.v1"] == 3 and not pipeline.emulator.calls["batchUpdate.v2"]
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    counts = assert_accounted(pipeline, run)
    assert (counts["succeeded"], counts["not_found"]) == (5, 5)
    # Per batch, as Target counted them (ids 1-4: 2 known, 5-8: 2, 9-10: 1).
    assert [b["counts"]["not_found"] for b in run.batches] == [2, 2, 1]
    assert [b["targetCounts"]["notFound"] for b in run.batches] == [2, 2, 1]
    # v1 never creates a profile; known ones are updated.
    for i in range(1, 11):
        profile = pipeline.emulator.store.get(CLIENT, "thirdPartyId", visitor_id(i))
        assert (profile is not None) == (i in known)
        if profile:
            assert profile["tier"] == "gold"
    assert pipeline.emulator.store.count(CLIENT) == len(known)
    assert "not_found 5" in pipeline.messages()[0]["Message"]


def test_single_update_mode_records_each_rows_answer(pipeline):
    pipeline.setting(batch_max_rows=4, single_update_concurrency=1)
    for i in range(1, 8):
        pipeline.emulator.store.put(CLIENT, "thirdPartyId", visitor_id(i), {"tier": "silver"})
    # Target answers the first update with 500s on every try, and answers every other one.
    pipeline.emulator.queue_faults("update", *["500"] * 5)
    body = visitors(7)

    run = pipeline.run(body, folders="api=single/")

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["apiVersion"] == "single"
    assert not pipeline.emulator.calls["batchUpdate"] and not pipeline.emulator.calls["batchStatus"]
    # HTTP_MAX_ATTEMPTS=3, one row at a time: the first row meets three 500s and fails, the second
    # meets the last two and succeeds on its third call, the other five need one call each.
    assert pipeline.emulator.calls["update"] == 3 + 3 + 5
    assert run.execution.invocations["SingleUpdate"] == 2
    assert "ReserveQuota" not in run.execution.invocations
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    counts = assert_accounted(pipeline, run)
    assert (counts["succeeded"], counts["failed"]) == (6, 1)
    assert [b["status"] for b in run.batches] == ["COMPLETE", "COMPLETE"]
    rows = report_by_line(pipeline, run.job)
    assert len(rows) == 1
    ((line, row),) = rows.items()
    assert row["outcome"] == "failed" and row["reason"].startswith("Target did not accept the update: ")
    assert row["reason"].endswith(" call(s), the last answered HTTP 500")
    assert line == source_line(body, row["id"])
    # Every other row's answer is in Target's store.
    updated = {
        i
        for i in range(1, 8)
        if pipeline.emulator.store.get(CLIENT, "thirdPartyId", visitor_id(i))["tier"] == "gold"
    }
    assert updated == set(range(1, 8)) - {int(row["id"][4:])}


def test_single_update_waits_for_its_rolling_quota(pipeline):
    pipeline.setting(batch_max_rows=4, single_update_quota=6, max_concurrency=1)
    for i in range(1, 9):
        pipeline.emulator.store.put(CLIENT, "thirdPartyId", visitor_id(i))

    run = pipeline.run(visitors(8), folders="api=single/")

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE"
    assert assert_accounted(pipeline, run)["succeeded"] == 8
    assert pipeline.emulator.calls["update"] == 8
    # The second batch waited for the first one's calls to leave the rolling 24 h window.
    assert pipeline.clock.elapsed >= 24 * 3600
    waited = [b for b in run.batches if b.get("quotaWaitSeconds")]
    assert len(waited) == 1
    messages = pipeline.messages()
    assert len(messages) == 1 and "waits" in messages[0]["Subject"]


# ------------------------------------------------------------------------------------- failures
def test_a_step_that_raises_leaves_its_batch_pending_and_the_others_go_on(pipeline, monkeypatch):
    pipeline.setting(batch_max_rows=3)
    poll = bulk.poll_batch

    def broken(ports, item):
        if item["batch"]["batchIndex"] == 1:
            raise RuntimeError("disk on fire")
        return poll(ports, item)

    monkeypatch.setattr(bulk, "poll_batch", broken)

    run = pipeline.run(visitors(5))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    counts = assert_accounted(pipeline, run)
    assert (counts["pending"], counts["succeeded"]) == (3, 2)
    first, second = run.batches
    assert first["status"] == "STATUS_FAILED"
    assert (
        first["reason"]
        == "Target accepted the batch; its status could not be read (RuntimeError: disk on fire)"
    )
    assert second["status"] == "COMPLETE"
    rows = report_by_line(pipeline, run.job)
    assert sorted(rows) == [2, 3, 4] and {r["outcome"] for r in rows.values()} == {"pending"}
    messages = pipeline.messages()
    assert subjects(messages) == [f"target-profile-sync: job {run.job['jobId']} COMPLETE_WITH_ERRORS"]
    assert "pending 3" in messages[0]["Message"]


def test_a_missing_manifest_fails_the_job_with_a_status_and_a_message(pipeline):
    job = pipeline.job(pipeline.ingest(visitors(5))["jobId"])
    s3 = boto3.client("s3", region_name=REGION)
    s3.delete_object(Bucket=pipeline.stack.bucket, Key=job["manifestKey"])

    run = run_job(pipeline, job)

    assert run.execution.status == "FAILED", run.execution.describe()
    assert run.job["status"] == "FAILED"
    assert run.job["reason"]
    assert subjects(pipeline.messages()) == [f"target-profile-sync: job {run.job['jobId']} FAILED"]


def test_rows_that_do_not_add_up_fail_the_finalize_step_loudly(pipeline):
    job = pipeline.job(pipeline.ingest(visitors(5))["jobId"])
    table = boto3.resource("dynamodb", region_name=REGION).Table(pipeline.stack.jobs_table)
    table.update_item(
        Key={"pk": f"JOB#{job['jobId']}", "sk": "JOB"},
        UpdateExpression="SET received = :n",
        ExpressionAttributeValues={":n": 6},  # one row more than the batches hold
    )

    run = run_job(pipeline, job)

    assert run.execution.status == "FAILED", run.execution.describe()
    assert run.job["status"] == "FAILED"
    assert "AccountingError" in run.job["reason"] and "do not add up" in run.job["reason"]
    assert "reportKey" not in run.job
    assert subjects(pipeline.messages()) == [f"target-profile-sync: job {run.job['jobId']} FAILED"]


def test_a_token_revoked_while_polling_fails_the_job_and_leaves_the_rows_pending(
    pipeline, token_secret, monkeypatch
):
    pipeline.setting(batch_max_rows=4)
    pipeline.emulator.configure(polls_until_complete=1)
    poll = bulk.poll_batch

    def poll_after_revocation(ports, item):
        pipeline.emulator.revoke_token()  # after the upload, and nobody stores a new token
        return poll(ports, item)

    monkeypatch.setattr(bulk, "poll_batch", poll_after_revocation)

    run = pipeline.run(visitors(6))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "FAILED"
    assert run.job["reason"].startswith("Target refused authentication: HTTP 401 from GET http://127.0.0.1:")
    assert "/m2/acme/v2/profile/batchStatus after one token refresh" in run.job["reason"]
    assert assert_accounted(pipeline, run)["pending"] == 6
    # One poll per batch at most: after the first refusal no batch of the job calls Target again.
    assert run.execution.invocations["PollBatch"] == 2, run.execution.describe()
    assert (
        pipeline.emulator.calls["batchStatus"] <= 4
    )  # each refused call is tried once more with a new token
    for batch in run.batches:
        assert batch["status"] == "STATUS_FAILED" and batch["statusUrl"]
        assert batch["reason"].startswith("Target accepted the batch;")
        assert "Target refused authentication: HTTP 401" in batch["reason"]
    rows = report_by_line(pipeline, run.job)
    assert sorted(rows) == list(range(2, 8))
    assert {r["outcome"] for r in rows.values()} == {"pending"}
    messages = pipeline.messages()
    assert subjects(messages) == [f"target-profile-sync: job {run.job['jobId']} FAILED"]
    assert "pending 6" in messages[0]["Message"]


def test_a_reservation_retried_after_midnight_is_not_counted_again(pipeline):
    """The try that reserved the rows lost its answer; the retry comes on the next UTC day."""
    pipeline.setting(daily_row_quota=100)
    job = pipeline.ingest(b"pcId,a\n1,x\n2,y\n")
    item = {
        "jobId": job["jobId"],
        "clientCode": CLIENT,
        "batch": {"batchIndex": 1, "rows": 2, "key": f"jobs/{job['jobId']}/batches/batch-00001.txt"},
    }
    ports = quota_ports()
    assert quota_step.reserve_quota(ports, item)["granted"]
    pipeline.clock.advance(24 * 3600)

    again = quota_step.reserve_quota(ports, item)

    assert again["granted"] and again["window"] == "2026-11-28"
    table = boto3.resource("dynamodb", region_name=REGION).Table(pipeline.stack.jobs_table)
    assert table.get_item(Key={"pk": f"QUOTA#{CLIENT}", "sk": "2026-11-29"}).get("Item") is None
