"""The workflow's steps over in-memory fakes of their ports (tests/unit/fakes.py): each use case
and its unhappy paths, in milliseconds. tests/workflow runs the same steps through the real
handlers, moto and the Target emulator: they prove the adapters, these pin down each decision."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from profile_sync import clock
from profile_sync.adobe_target.errors import (
    TargetAuthError,
    TargetMaybeAccepted,
    TargetRejected,
    TargetRetryLater,
)
from profile_sync.adobe_target.responses import BatchStatus
from profile_sync.ingest import Drop, ingest_drop
from profile_sync.model import BatchEnd, BatchItem, JobKeys, JobRecord, JobStatus
from profile_sync.outcomes import MAYBE_ACCEPTED_REASON
from profile_sync.settings import Settings
from profile_sync.workflow import bulk, failure, quota, report, single
from tests.unit.fakes import (
    FakeClock,
    FakeDailyQuota,
    FakeRollingQuota,
    World,
    bulk_ports,
    ingest_ports,
    quota_ports,
    record_ports,
    report_ports,
    single_ports,
    time_left_seen,
)

START = datetime(2026, 11, 28, 22, 0, tzinfo=UTC).timestamp()  # two hours before the UTC day ends
SETTINGS = Settings()
CSV = b"pcId,tier\n1,gold\n2,silver\n3,bronze\n"
STATUS_URL = "https://mc.adobe.io/m2/acme/v2/profile/batchStatus?batchId=b1"


@pytest.fixture
def world() -> World:
    return World(clock=FakeClock(START))


def drop(
    world: World, body: bytes = CSV, *, api: str = "v2", settings: Settings = SETTINGS
) -> tuple[JobRecord, list[BatchItem]]:
    """A file ingested as the ingest function does it: the job, its batch files, manifest and records."""
    n = len(world.jobs.jobs)
    key = f"incoming/acme/api={api}/people-{n}.csv"
    world.objects.objects[key] = body
    event = Drop(
        bucket="drop", key=key, size=len(body), sequencer=f"{n:016d}", event_time="2026-11-28T22:00:00Z"
    )
    job = ingest_drop(
        event, ingest_ports(world, settings), now=lambda: datetime.fromtimestamp(world.clock(), UTC)
    )
    assert job["status"] == JobStatus.QUEUED, job.get("reason")
    items: list[BatchItem] = [
        {
            "jobId": job["jobId"],
            "clientCode": "acme",
            "apiVersion": job["apiVersion"],
            "manifestKey": job["manifestKey"],
            "batch": pointer,
        }
        for pointer in world.objects.get_json(job["batchesKey"])
    ]
    return job, items


def rows(count: int) -> bytes:
    return b"pcId,tier\n" + b"".join(b"%d,t%d\n" % (i, i) for i in range(1, count + 1))


def results(world: World, item: BatchItem, cursor: int | None = None) -> list[list[str]]:
    """The batch's results file: [line, id, outcome, reason, batch] of every row that is not a success."""
    key = JobKeys(item["jobId"]).results(item["batch"]["batchIndex"], cursor)
    return list(csv.reader(io.StringIO(world.objects.text(key))))


def record(world: World, item: BatchItem) -> dict[str, Any]:
    found = world.jobs.get_batch(item["jobId"], item["batch"]["batchIndex"])
    assert found is not None
    return dict(found)


def job_of(world: World, item: BatchItem) -> dict[str, Any]:
    found = world.jobs.get_job(item["jobId"])
    assert found is not None
    return dict(found)


def submitted(world: World, item: BatchItem, settings: Settings = SETTINGS) -> BatchItem:
    """The item as PollStatus gets it, after a submit Target accepted."""
    poll = bulk.submit_batch(bulk_ports(world, settings), item)
    assert not poll["done"]
    return {**item, "poll": poll}


def auth_error() -> TargetAuthError:
    return TargetAuthError("401 Unauthorized", status=401, attempts=2)


# ------------------------------------------------------------------------------------- quota
def test_a_granted_reservation_is_counted_once_however_often_the_step_runs(world):
    world.daily_quota = FakeDailyQuota(10)
    ports = quota_ports(world, SETTINGS.with_overrides(daily_row_quota=10))
    _, [item] = drop(world)

    first = quota.reserve_quota(ports, item)
    again = quota.reserve_quota(ports, item)

    assert (
        first == again == {"granted": True, "waitSeconds": 0, "used": 3, "limit": 10, "window": "2026-11-28"}
    )
    assert record(world, item)["quotaReservedOn"] == "2026-11-28"


def test_a_spent_quota_makes_batches_wait_for_the_next_utc_day_and_tells_a_person_once(world):
    world.daily_quota = FakeDailyQuota(4)
    ports = quota_ports(world, SETTINGS.with_overrides(daily_row_quota=4))
    _, [first, second, third] = drop(world, rows(6), settings=SETTINGS.with_overrides(batch_max_rows=2))

    assert quota.reserve_quota(ports, first)["granted"]
    assert quota.reserve_quota(ports, second)["granted"]
    refused = quota.reserve_quota(ports, third)
    again = quota.reserve_quota(ports, third)

    assert (
        refused
        == again
        == {"granted": False, "waitSeconds": 2 * 3600 + 60, "used": 4, "limit": 4, "window": "2026-11-28"}
    )
    assert record(world, third)["status"] == "WAITING_FOR_QUOTA"
    assert record(world, third)["quotaWaitSeconds"] == 2 * 3600 + 60
    assert [subject for subject, _ in world.notifier.sent] == [
        f"target-profile-sync: job {third['jobId']} waits for the daily quota"
    ]
    assert "4 of 4 rows on 2026-11-28" in world.notifier.sent[0][1]

    world.clock.advance(2 * 3600 + 60)  # the next UTC day
    assert quota.reserve_quota(ports, third)["window"] == "2026-11-29"


def test_the_wait_notice_is_marked_sent_only_once_published(world):
    world.daily_quota = FakeDailyQuota(2)
    ports = quota_ports(world, SETTINGS.with_overrides(daily_row_quota=2))
    _, [first, second] = drop(world, settings=SETTINGS.with_overrides(batch_max_rows=2))
    assert quota.reserve_quota(ports, first)["granted"]
    world.notifier.down = True

    assert not quota.reserve_quota(ports, second)["granted"]
    assert not job_of(world, second).get("quotaWaitNotified")

    world.notifier.down = False
    quota.reserve_quota(ports, second)
    quota.reserve_quota(ports, second)
    assert job_of(world, second)["quotaWaitNotified"] is True
    assert len(world.notifier.sent) == 1


def test_a_reservation_retried_after_midnight_is_not_counted_again(world):
    world.daily_quota = FakeDailyQuota(10)
    ports = quota_ports(world, SETTINGS.with_overrides(daily_row_quota=10))
    _, [item] = drop(world)
    assert quota.reserve_quota(ports, item)["granted"]
    world.clock.advance(24 * 3600)

    again = quota.reserve_quota(ports, item)

    assert again["granted"] and again["window"] == "2026-11-28"
    assert world.daily_quota.used("acme", "2026-11-29") == 0


# ------------------------------------------------------------------------------------- submit
def test_a_submitted_batch_is_sent_once_and_polled_from_its_status_url(world):
    _, [item] = drop(world)

    poll = bulk.submit_batch(bulk_ports(world, SETTINGS), item)

    assert poll == {
        "done": False,
        "statusUrl": STATUS_URL,
        "submittedAt": START,
        "deadlineAt": START + SETTINGS.poll_deadline_seconds,
        "polls": 0,
        "unknownStreak": 0,
        "delaySeconds": SETTINGS.poll_initial_delay_seconds,
    }
    assert world.target("acme").posted == [world.objects.objects[item["batch"]["key"]]]
    assert record(world, item) | {"submitStartedAt": "x"} == record(world, item) | {
        "status": "SUBMITTED",
        "statusUrl": STATUS_URL,
        "targetBatchId": "b1",
        "submitCalls": 1,
        "submitStartedAt": "x",
    }


def test_target_busy_clears_the_marker_so_a_retry_may_post_again(world):
    _, [item] = drop(world)
    target = world.target("acme")
    target.submits.append(
        TargetRetryLater("503 Service Unavailable", status=503, attempts=3, retry_after_seconds=60)
    )

    with pytest.raises(TargetRetryLater):
        bulk.submit_batch(bulk_ports(world, SETTINGS), item)
    assert record(world, item)["status"] == "SUBMIT_RETRY"
    assert record(world, item)["submitStartedAt"] == ""
    assert record(world, item)["lastAnswer"] == "HTTP 503, 3 call(s) in this try"

    poll = bulk.submit_batch(bulk_ports(world, SETTINGS), item)  # Step Functions' retry
    assert not poll["done"]
    assert len(target.posted) == 2
    assert record(world, item)["submitCalls"] == 4


def test_a_batch_target_may_have_accepted_is_never_sent_again_and_its_rows_are_pending(world):
    _job, [item] = drop(world)
    target = world.target("acme")
    target.submits.append(TargetMaybeAccepted("read timeout after the body was sent", attempts=1))

    done = bulk.submit_batch(bulk_ports(world, SETTINGS), item)
    again = bulk.submit_batch(bulk_ports(world, SETTINGS), item)  # a re-entered step

    assert (
        done
        == again
        == {
            "done": True,
            "end": BatchEnd.MAYBE_ACCEPTED,
            "counts": {"succeeded": 0, "failed": 0, "not_found": 0, "pending": 3},
        }
    )
    assert len(target.posted) == 1
    listed = results(world, item)
    assert [(line, vid, outcome) for line, vid, outcome, _, _ in listed] == [
        ("2", "1", "pending"),
        ("3", "2", "pending"),
        ("4", "3", "pending"),
    ]
    assert all(reason.startswith(MAYBE_ACCEPTED_REASON) for _, _, _, reason, _ in listed)


def test_a_maybe_accepted_batch_with_a_status_url_is_followed(world):
    _, [item] = drop(world)
    world.target("acme").submits.append(
        TargetMaybeAccepted("garbled answer", attempts=1, status_url=STATUS_URL)
    )

    poll = bulk.submit_batch(bulk_ports(world, SETTINGS), item)

    assert not poll["done"] and poll["statusUrl"] == STATUS_URL


def test_a_step_re_entered_after_a_crash_mid_post_does_not_post_again(world):
    _, [item] = drop(world)
    # The first try wrote its marker and died in the POST (the Lambda timed out).
    world.jobs.update_batch(
        item["jobId"], 1, {"status": "SUBMITTING", "submitStartedAt": "2026-11-28T22:00:00+00:00"}
    )

    done = bulk.submit_batch(bulk_ports(world, SETTINGS), item)

    assert done["done"] and done["end"] == BatchEnd.MAYBE_ACCEPTED
    assert world.target("acme").posted == []


def test_an_s3_error_before_the_marker_sends_nothing_and_marks_nothing(world):
    _, [item] = drop(world)
    world.objects.failing_reads.add(item["batch"]["key"])

    with pytest.raises(OSError):
        bulk.submit_batch(bulk_ports(world, SETTINGS), item)

    assert not record(world, item).get("submitStartedAt")
    assert world.target("acme").posted == []


def test_a_refused_batch_fails_its_rows_with_targets_reason(world):
    _, [item] = drop(world)
    world.target("acme").submits.append(
        TargetRejected("400 Bad Request: bad header | after 1 attempt(s)", status=400, attempts=1)
    )

    done = bulk.submit_batch(bulk_ports(world, SETTINGS), item)

    assert done["end"] == BatchEnd.SUBMIT_FAILED and done["counts"]["failed"] == 3
    assert record(world, item)["reason"] == "Target refused the batch: 400 Bad Request: bad header | HTTP 400"


def test_an_auth_failure_stops_the_whole_job_before_its_next_call(world):
    _, [first, second, third] = drop(world, rows(3), settings=SETTINGS.with_overrides(batch_max_rows=1))
    target = world.target("acme")
    polling = submitted(world, third)
    target.submits.append(auth_error())

    done = bulk.submit_batch(bulk_ports(world, SETTINGS), first)
    not_sent = bulk.submit_batch(bulk_ports(world, SETTINGS), second)
    not_followed = bulk.poll_batch(bulk_ports(world, SETTINGS), polling)

    assert done["end"] == BatchEnd.AUTH_FAILED and done["counts"]["failed"] == 1
    assert not_sent["end"] == BatchEnd.NOT_SENT and not_sent["counts"]["pending"] == 1
    assert not_followed["end"] == BatchEnd.STATUS_FAILED and not_followed["counts"]["pending"] == 1
    assert len(target.posted) == 2 and target.status_calls == []  # the third's submit, the first's refused
    failure_ = job_of(world, first)["authFailure"]
    assert (
        failure_["status"] == 401
        and failure_["endpoint"] == "POST https://mc.adobe.io/m2/acme/v2/profile/batchUpdate"
    )
    assert "Target refused authentication: HTTP 401" in record(world, second)["reason"]


# ------------------------------------------------------------------------------------- poll
def test_a_complete_batch_maps_targets_failed_ids_to_their_source_lines(world):
    _, [item] = drop(world, b"pcId,tier\n1,gold\n# a comment\n2,silver\n3,bronze\n")
    item = submitted(world, item)
    world.target("acme").statuses.append(
        BatchStatus(
            state="complete", batch_size=3, successful=2, failed=1, profiles=[("2", "failed")], attempts=1
        )
    )

    poll = bulk.poll_batch(bulk_ports(world, SETTINGS), item)

    assert poll["done"] and poll["end"] == BatchEnd.COMPLETE and poll["polls"] == 1
    # The client is told what was sent: an answer without <status> or batchSize can then prove complete.
    assert world.target("acme").expected_rows == [3]
    assert poll["counts"] == {"succeeded": 2, "failed": 1, "not_found": 0, "pending": 0}
    assert [row[:3] for row in results(world, item)] == [["4", "2", "failed"]]
    assert record(world, item)["status"] == "COMPLETE"
    assert record(world, item)["targetCounts"] == {"batchSize": 3, "successful": 2, "failed": 1}


def test_a_stuck_batch_fails_its_rows(world):
    _, [item] = drop(world)
    item = submitted(world, item)
    world.target("acme").statuses.append(BatchStatus(state="stuck", attempts=1))

    poll = bulk.poll_batch(bulk_ports(world, SETTINGS), item)

    assert poll["end"] == BatchEnd.STUCK and poll["counts"]["failed"] == 3


def test_a_status_that_vanishes_for_long_enough_ends_the_batch_pending(world):
    settings = SETTINGS.with_overrides(vanished_after_polls=2)
    _, [item] = drop(world)
    item = submitted(world, item, settings)
    target = world.target("acme")
    target.statuses += [
        BatchStatus(state="unknown"),
        BatchStatus(state="incomplete"),
        BatchStatus(state="unknown"),
        BatchStatus(state="unknown"),
    ]

    states = []
    for _ in range(4):
        poll = bulk.poll_batch(bulk_ports(world, settings), item)
        states.append((poll["done"], poll["unknownStreak"]))
        item = {**item, "poll": poll}

    assert states == [(False, 1), (False, 0), (False, 1), (True, 2)]
    assert poll["end"] == BatchEnd.VANISHED and poll["counts"]["pending"] == 3


def test_target_busy_waits_at_least_as_long_as_it_asked_and_is_not_a_vanished_status(world):
    _, [item] = drop(world)
    item = submitted(world, item)
    world.target("acme").statuses.append(
        TargetRetryLater("503", status=503, attempts=3, retry_after_seconds=900)
    )

    poll = bulk.poll_batch(bulk_ports(world, SETTINGS), item)

    assert not poll["done"] and poll["delaySeconds"] == 900 and poll["unknownStreak"] == 0
    assert record(world, item)["status"] == "POLLING"


def test_the_deadline_ends_a_batch_target_never_finished(world):
    settings = SETTINGS.with_overrides(poll_deadline_seconds=3600)
    _, [item] = drop(world)
    item = submitted(world, item, settings)
    world.clock.advance(1800)
    poll = bulk.poll_batch(bulk_ports(world, settings), item)
    assert not poll["done"] and poll["delaySeconds"] <= 1800

    world.clock.advance(1800)
    poll = bulk.poll_batch(bulk_ports(world, settings), {**item, "poll": poll})

    assert poll["end"] == BatchEnd.DEADLINE and poll["counts"]["pending"] == 3
    assert record(world, item)["reason"] == "polling deadline reached before Target completed the batch"


def test_a_status_url_target_refuses_ends_the_batch_pending(world):
    _, [item] = drop(world)
    item = submitted(world, item)
    world.target("acme").statuses.append(TargetRejected("404 Not Found", status=404, attempts=1))

    poll = bulk.poll_batch(bulk_ports(world, SETTINGS), item)

    assert poll["end"] == BatchEnd.STATUS_FAILED and poll["counts"]["pending"] == 3
    assert (
        record(world, item)["reason"]
        == "Target accepted the batch; its status could not be read: 404 Not Found | HTTP 404"
    )


# ------------------------------------------------------------------------------------- single updates
def test_single_updates_go_chunk_by_chunk_and_a_retried_chunk_is_neither_sent_nor_counted_twice(world):
    settings = SETTINGS.with_overrides(single_update_chunk_rows=2, single_update_concurrency=1)
    _, [item] = drop(world, api="single")
    target = world.target("acme")
    target.updates += [None, TargetRejected("400 Bad Request: bad value", status=400, attempts=1)]

    first = single.single_update(single_ports(world, settings), item)
    retried = single.single_update(single_ports(world, settings), item)  # the first's answer was lost
    last = single.single_update(single_ports(world, settings), {**item, "single": retried})

    assert first == {
        "cursor": 2,
        "done": False,
        "waitSeconds": 0,
        "counts": {"succeeded": 1, "failed": 1, "pending": 0},
    }
    assert retried == {"cursor": 2, "done": False, "waitSeconds": 0}
    assert last == {
        "cursor": 3,
        "done": True,
        "waitSeconds": 0,
        "counts": {"succeeded": 1, "failed": 0, "pending": 0},
    }
    assert [visitor for _, visitor, _ in target.updated] == ["1", "2", "3"]
    assert record(world, item)["counts"] == {"succeeded": 2, "failed": 1, "not_found": 0, "pending": 0}
    assert record(world, item)["status"] == "COMPLETE"
    assert [row[:4] for row in results(world, item, 0)] == [
        ["3", "2", "failed", "Target refused the update: 400 Bad Request: bad value | HTTP 400"]
    ]
    assert results(world, item, 2) == []


def test_an_auth_failure_in_single_updates_leaves_the_unsent_rows_pending(world):
    settings = SETTINGS.with_overrides(single_update_chunk_rows=2, single_update_concurrency=1)
    _, [item] = drop(world, rows(5), api="single")
    world.target("acme").updates.append(auth_error())

    result = single.single_update(single_ports(world, settings), item)

    assert result["done"] and result["cursor"] == 5
    assert result["counts"] == {"succeeded": 0, "failed": 1, "pending": 4}
    assert record(world, item)["counts"] == {"succeeded": 0, "failed": 1, "not_found": 0, "pending": 4}
    assert len(world.target("acme").updated) == 1  # nothing sent after the refusal
    assert job_of(world, item)["authFailure"]["endpoint"] == "GET https://mc.adobe.io/m2/acme/profile/update"


def test_spent_single_update_quota_waits_without_sending(world):
    world.single_quota = FakeRollingQuota(3)
    settings = SETTINGS.with_overrides(single_update_chunk_rows=2)
    _, [item] = drop(world, rows(5), api="single")
    first = single.single_update(single_ports(world, settings), item)

    result = single.single_update(single_ports(world, settings), {**item, "single": first})

    assert result == {"cursor": 2, "done": False, "waitSeconds": 24 * 3600 + 60}
    assert len(world.target("acme").updated) == 2
    assert record(world, item)["status"] == "WAITING_FOR_QUOTA"


def test_each_single_update_sees_the_invocations_time_left(world):
    """The Target client never sleeps past the Lambda's end: its threads must see time_left()."""
    _, [item] = drop(world, api="single")
    answer = time_left_seen(None)
    world.target("acme").updates += [answer] * 3

    with clock.invocation(lambda: 42.0):
        single.single_update(single_ports(world, SETTINGS.with_overrides(single_update_concurrency=3)), item)

    assert answer.seen == [42.0, 42.0, 42.0]


# ------------------------------------------------------------------------------------- a batch's step failed
def step_error(name: str, message: str) -> dict[str, str]:
    return {"Error": name, "Cause": f'{{"errorMessage": "{message}", "errorType": "{name}"}}'}


def test_a_submit_target_refused_on_every_try_fails_its_rows_with_the_calls_made(world):
    _, [item] = drop(world)
    world.target("acme").submits.append(
        TargetRetryLater("503", status=503, attempts=3, retry_after_seconds=60)
    )
    with pytest.raises(TargetRetryLater):
        bulk.submit_batch(bulk_ports(world, SETTINGS), item)

    done = failure.fail_batch(record_ports(world), {**item, "error": step_error("TargetRetryLater", "503")})

    assert done["end"] == BatchEnd.SUBMIT_FAILED and done["counts"]["failed"] == 3
    assert (
        record(world, item)["reason"]
        == "Target did not accept the batch: 3 call(s) to batchUpdate, the last answered HTTP 503"
    )


def test_a_failed_step_after_the_marker_leaves_the_rows_pending_never_failed(world):
    _, [item] = drop(world)
    world.jobs.update_batch(item["jobId"], 1, {"submitStartedAt": "2026-11-28T22:00:00+00:00"})

    done = failure.fail_batch(
        record_ports(world), {**item, "error": step_error("Sandbox.Timedout", "timed out")}
    )

    assert done["end"] == BatchEnd.MAYBE_ACCEPTED and done["counts"]["pending"] == 3


def test_a_status_that_could_not_be_read_leaves_the_rows_pending(world):
    _, [item] = drop(world)
    item = submitted(world, item)

    done = failure.fail_batch(
        record_ports(world), {**item, "stage": "status", "error": step_error("States.Timeout", "")}
    )

    assert done["end"] == BatchEnd.STATUS_FAILED and done["counts"]["pending"] == 3


def test_a_batch_that_ended_before_its_step_failed_keeps_its_end(world):
    _, [item] = drop(world)
    item = submitted(world, item)
    world.target("acme").statuses.append(BatchStatus(state="complete", batch_size=3, successful=3))
    bulk.poll_batch(bulk_ports(world, SETTINGS), item)
    writes = world.jobs.writes

    done = failure.fail_batch(record_ports(world), {**item, "error": step_error("Lambda.Unknown", "")})

    assert done == {
        "done": True,
        "end": BatchEnd.COMPLETE,
        "counts": {"succeeded": 3, "failed": 0, "not_found": 0, "pending": 0},
    }
    assert world.jobs.writes == writes


# ------------------------------------------------------------------------------------- the report
def test_finalize_accounts_every_row_writes_the_report_and_tells_a_person_about_errors(world):
    job, [item] = drop(world, b"pcId,tier\n1,gold\n,empty id\n2,silver\n3,bronze\n")
    item = submitted(world, item)
    world.target("acme").statuses.append(
        BatchStatus(state="complete", batch_size=3, profiles=[("3", "failed")])
    )
    bulk.poll_batch(bulk_ports(world, SETTINGS), item)
    world.clock.advance(600)

    result = report.finalize_job(report_ports(world), job["jobId"])

    assert result == {
        "jobId": job["jobId"],
        "status": JobStatus.COMPLETE_WITH_ERRORS,
        "received": 4,
        "rejected": 1,
        "skipped": 0,
        "unchanged": 0,
        "succeeded": 2,
        "failed": 1,
        "not_found": 0,
        "pending": 0,
        "durationSeconds": 600,
    }
    rows_csv = list(csv.reader(io.StringIO(world.objects.text(JobKeys(job["jobId"]).report_rows))))
    assert [row[:3] for row in rows_csv] == [
        ["line", "id", "outcome"],
        ["3", "", "rejected"],
        ["5", "3", "failed"],
    ]
    summary = world.objects.get_json(JobKeys(job["jobId"]).report_summary)
    assert summary["account"]["failed"] == 1 and summary["status"] == "COMPLETE_WITH_ERRORS"
    assert job_of(world, item)["status"] == "COMPLETE_WITH_ERRORS"
    assert [subject for subject, _ in world.notifier.sent] == [
        f"target-profile-sync: job {job['jobId']} COMPLETE_WITH_ERRORS"
    ]


def test_a_clean_job_completes_without_a_message(world):
    job, [item] = drop(world)
    item = submitted(world, item)
    world.target("acme").statuses.append(BatchStatus(state="complete", batch_size=3, successful=3))
    bulk.poll_batch(bulk_ports(world, SETTINGS), item)

    assert report.finalize_job(report_ports(world), job["jobId"])["status"] == JobStatus.COMPLETE
    assert world.notifier.sent == []


def test_batches_whose_steps_never_recorded_an_end_are_accounted_pending(world):
    job, [first, second] = drop(world, rows(4), settings=SETTINGS.with_overrides(batch_max_rows=2))
    submitted(world, first)  # then its steps and the failure recording all failed

    result = report.finalize_job(report_ports(world), job["jobId"])

    assert result["pending"] == 4 and result["status"] == JobStatus.COMPLETE_WITH_ERRORS
    assert record(world, first)["reason"].startswith(MAYBE_ACCEPTED_REASON)
    assert record(world, second)["reason"].startswith("the batch's outcome is unknown")


def test_an_auth_failure_ends_the_job_failed_with_its_report(world):
    job, [item] = drop(world)
    world.target("acme").submits.append(auth_error())
    bulk.submit_batch(bulk_ports(world, SETTINGS), item)

    result = report.finalize_job(report_ports(world), job["jobId"])

    assert result["status"] == JobStatus.FAILED and result["failed"] == 3
    assert result["reason"].startswith("Target refused authentication: HTTP 401")


# ------------------------------------------------------------------------------------- the job failed
def test_a_failed_job_ends_failed_with_its_report_and_names_the_unfinished_batches(world):
    job, [first, _second] = drop(world, rows(4), settings=SETTINGS.with_overrides(batch_max_rows=2))
    first = submitted(world, first)
    world.target("acme").statuses.append(BatchStatus(state="complete", batch_size=2, successful=2))
    bulk.poll_batch(bulk_ports(world, SETTINGS), first)

    result = failure.job_failed(report_ports(world), job["jobId"], step_error("States.Runtime", "map failed"))

    assert result["status"] == JobStatus.FAILED
    assert result["reason"] == "States.Runtime: map failed; batches that did not finish: 2 (PENDING)"
    assert result["succeeded"] == 2 and result["pending"] == 2
    assert world.objects.get_json(JobKeys(job["jobId"]).report_summary)["status"] == "FAILED"
    assert [subject for subject, _ in world.notifier.sent] == [
        f"target-profile-sync: job {job['jobId']} FAILED"
    ]


def test_a_job_whose_rows_do_not_add_up_still_ends_failed_with_why(world):
    job, [item] = drop(world)
    world.jobs.update_job(job["jobId"], {"accepted": 99})  # lost data: never papered over

    result = failure.job_failed(report_ports(world), job["jobId"], step_error("States.Runtime", "boom"))

    assert result["status"] == JobStatus.FAILED
    assert "no report: AccountingError" in result["reason"]
    assert job_of(world, item)["status"] == "FAILED"
    assert not world.objects.list_keys(JobKeys(job["jobId"]).prefix + "report/summary")
    assert "no report: AccountingError" in world.notifier.sent[0][1]
