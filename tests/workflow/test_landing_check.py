"""Did it land? The landing check after a job, through the real ASL and handlers (moto server), with
the Target emulator over HTTP answering the profile fetch with what its batches applied.

The emulator is no kinder than Target: `lose_share` reports rows successful and never applies them,
`visibility_seconds` shows a complete batch's values only that much later, queued faults answer a
fetch with 429, 500 or 401. The job's status never changes because of the check.
"""

from __future__ import annotations

import json

from profile_sync import landing
from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.landing_step import sample_key
from profile_sync_local.stack.functions import load_function
from tests.conftest import FakeContext, event_path
from tests.workflow.conftest import CLIENT
from tests.workflow.test_scenarios import assert_accounted, source_line, visitor_id, visitors

OLD = {"tier": "silver", "value": "0.00", "city": "Paris"}  # what Target held before the job


def _sampled(pipeline, job: dict) -> dict[str, str]:
    """visitor id -> outcome of each sampled row (the sample in S3: ids stay there, not in logs)."""
    sample = landing.Sample.from_dict(json.loads(pipeline.read(sample_key(job["jobId"]))))
    return {row.visitor_id: row.outcome for row in sample.rows}


def _notices(pipeline) -> list[dict]:
    return [m for m in pipeline.messages() if "profiles did not verify" in m["Subject"]]


def test_lost_updates_are_caught_read_again_and_notified_without_touching_the_job(pipeline):
    """40 rows, half of them profiles Target already had; Target reports every row successful and
    loses a share: the lost new profiles are not visible, the lost updates show the old values."""
    pipeline.setting(batch_max_rows=10, landing_check_sample_rows=40, landing_check_retries=2)
    pipeline.emulator.configure(lose_share=0.25)
    for i in range(1, 21):
        pipeline.emulator.store.put(CLIENT, "thirdPartyId", visitor_id(i), OLD)
    body = visitors(40)

    run = pipeline.run(body)

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE"  # Target said every row succeeded; the check says more
    assert assert_accounted(pipeline, run)["succeeded"] == 40
    lost = {visitor for _, visitor in pipeline.emulator.lost_updates(CLIENT)}
    assert 0 < len(lost) < 40
    lost_updates = {v for v in lost if int(v.removeprefix("CRM-")) <= 20}
    lost_new = lost - lost_updates
    assert lost_updates and lost_new  # both kinds of loss take part (the emulator's seeded draw)
    # Each sampled row ends as what Target holds: lost -> mismatched (old values) or not visible.
    outcomes = _sampled(pipeline, run.job)
    assert set(outcomes) == {visitor_id(i) for i in range(1, 41)}
    for visitor, outcome in outcomes.items():
        expected = (
            landing.MISMATCHED
            if visitor in lost_updates
            else landing.NOT_VISIBLE
            if visitor in lost_new
            else landing.VERIFIED
        )
        assert outcome == expected, visitor
    figures = {
        "sampled": 40,
        "eligible": 40,
        "verified": 40 - len(lost),
        "mismatched": len(lost_updates),
        "notVisible": len(lost_new),
        "unchecked": 0,
        "rounds": 3,  # the first read and LANDING_CHECK_RETRIES=2 more of what did not verify
    }
    assert run.job["landingCheck"] == {"status": "DONE", **figures}
    # Reads: every profile once, then the lost ones twice more (nothing else is read again).
    assert pipeline.emulator.calls["profiles"] == 40 + 2 * len(lost)
    assert run.execution.invocations["LandingCheck"] == 4  # draw the sample, then 3 reads
    # The report: the figures, and the lines of the rows that did not verify (attribute names only).
    summary = pipeline.summary(run.job)
    assert summary["status"] == "COMPLETE"
    assert summary["landingCheck"] == {
        "status": "DONE",
        **figures,
        "notVerifiedShare": round(len(lost) / 40, 4),
    }
    assert {row["line"] for row in summary["landingRows"]} == {source_line(body, v) for v in lost}
    for row in summary["landingRows"]:
        assert row["outcome"] in (landing.MISMATCHED, landing.NOT_VISIBLE)
        assert "silver" not in row["detail"] and "Paris" not in row["detail"]
    assert {row["detail"] for row in summary["landingRows"] if row["outcome"] == landing.MISMATCHED} == {
        "other value in city, tier, value"
    }
    # Above LANDING_CHECK_ALERT_SHARE (10%): one notice, saying what to do next.
    [notice] = _notices(pipeline)
    text = notice["Message"]
    assert run.job["jobId"] in notice["Subject"] and run.job["jobId"] in text
    assert f"{40 - len(lost)} of 40 sampled profiles" in text
    assert f"profile-sync report {run.job['jobId']}" in text
    assert "delta=off/" in text  # re-send the file: delta sync would skip rows Target "confirmed"
    assert not any(v in text for v in lost)  # counts and lines, never ids
    print(
        f"\nlost updates: {len(lost)} of 40 rows lost (lose_share 0.25); the check sampled 40: "
        f"{figures['verified']} verified, {figures['mismatched']} mismatched, "
        f"{figures['notVisible']} not visible after {figures['rounds']} reads "
        f"({pipeline.emulator.calls['profiles']} profile fetches)"
    )


def test_a_default_sample_of_twenty_is_drawn_at_random_from_the_succeeded_rows(pipeline):
    pipeline.setting(batch_max_rows=20)
    pipeline.emulator.configure(fail_ids=frozenset({visitor_id(3), visitor_id(50)}))
    run = pipeline.run(visitors(60))

    assert run.job["status"] == "COMPLETE_WITH_ERRORS" and run.job["succeeded"] == 58
    outcomes = _sampled(pipeline, run.job)
    assert len(outcomes) == 20  # LANDING_CHECK_SAMPLE_ROWS' default
    assert not outcomes.keys() & {visitor_id(3), visitor_id(50)}  # failed rows are not checked
    assert set(outcomes.values()) == {landing.VERIFIED}
    assert run.job["landingCheck"]["eligible"] == 58
    assert pipeline.emulator.calls["profiles"] == 20
    assert _notices(pipeline) == []


def test_below_the_alert_share_no_notice_goes_out(pipeline):
    pipeline.setting(landing_check_sample_rows=40, landing_check_alert_share=0.5, landing_check_retries=0)
    pipeline.emulator.configure(lose_share=0.25)
    run = pipeline.run(visitors(40))

    lost = pipeline.emulator.lost_updates(CLIENT)
    check = run.job["landingCheck"]
    assert 0 < len(lost) <= 20 and check["notVisible"] == len(lost) and check["rounds"] == 1
    assert run.job["status"] == "COMPLETE"
    assert _notices(pipeline) == []


def test_an_update_that_shows_late_verifies_on_a_later_read_without_a_notice(pipeline):
    """Target applies the batch after the first read (visibility 400 s > the 300 s delay)."""
    pipeline.setting(landing_check_sample_rows=10, landing_check_delay_seconds=300)
    pipeline.emulator.configure(visibility_seconds=400)
    run = pipeline.run(visitors(10))

    assert run.job["landingCheck"] == {
        "status": "DONE",
        "sampled": 10,
        "eligible": 10,
        "verified": 10,
        "mismatched": 0,
        "notVisible": 0,
        "unchecked": 0,
        "rounds": 2,
    }
    assert pipeline.emulator.calls["profiles"] == 20  # not visible at the first read, verified at the second
    assert _notices(pipeline) == []
    assert pipeline.summary(run.job)["landingRows"] == []


def test_off_at_zero_no_target_call_no_invocation(pipeline):
    pipeline.setting(landing_check_sample_rows=0)
    run = pipeline.run(visitors(5))

    assert run.execution.status == "SUCCEEDED"
    assert run.job["status"] == "COMPLETE"
    assert "LandingCheck" not in run.execution.invocations  # the ASL's Choice skips the function
    assert pipeline.emulator.calls["profiles"] == 0
    assert "landingCheck" not in run.job
    assert "landingCheck" not in pipeline.summary(run.job)


def test_fetches_throttled_or_failing_to_the_end_leave_rows_unchecked_with_a_reason(pipeline):
    """Every fetch answers 429 or 500 (the client's retries spent): the rows stay unchecked, the job
    keeps its status, and the notice says so (an unchecked sample is not a verified one)."""
    pipeline.setting(landing_check_sample_rows=3, landing_check_retries=1)
    pipeline.emulator.queue_faults("profiles", *(["429", "500"] * 30))
    run = pipeline.run(visitors(3))

    assert run.execution.status == "SUCCEEDED"
    assert run.job["status"] == "COMPLETE"
    check = run.job["landingCheck"]
    assert (check["status"], check["sampled"], check["unchecked"], check["verified"]) == ("DONE", 3, 3, 0)
    details = {row["detail"] for row in pipeline.summary(run.job)["landingRows"]}
    assert details and all(
        d.startswith(("the fetch failed", "the fetch did not get an answer")) for d in details
    )
    [notice] = _notices(pipeline)
    assert "unchecked 3" in notice["Message"]


def test_refused_credentials_end_the_check_with_a_reason_and_the_job_keeps_its_status(pipeline):
    pipeline.setting(landing_check_sample_rows=5)
    pipeline.emulator.queue_faults("profiles", *(["401"] * 10))
    run = pipeline.run(visitors(5))

    assert run.execution.status == "SUCCEEDED"
    assert run.job["status"] == "COMPLETE"
    check = run.job["landingCheck"]
    assert check["status"] == "DONE" and check["verified"] == 0
    assert check["reason"].startswith("Target refused authentication for the profile fetch (HTTP 401)")
    assert run.execution.invocations["LandingCheck"] == 2  # no further round: no read would fare better


def test_a_check_that_crashes_is_recorded_and_the_execution_still_succeeds(pipeline, monkeypatch):
    def broken(rows, fetch):
        raise RuntimeError("the sample could not be read")

    monkeypatch.setattr(landing, "read_round", broken)
    run = pipeline.run(visitors(3))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE"
    check = run.job["landingCheck"]
    assert check["status"] == "FAILED" and check["sampled"] == 0
    assert "RuntimeError" in check["reason"] or "could not be read" in check["reason"]


def test_a_job_without_a_succeeded_row_is_not_read_back(pipeline):
    pipeline.emulator.configure(fail_ids=frozenset(visitor_id(i) for i in range(1, 4)))
    run = pipeline.run(visitors(3))

    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    assert run.job["landingCheck"] == {
        "status": "DONE",
        "sampled": 0,
        "reason": "not run: no row of the job succeeded",
    }
    assert pipeline.emulator.calls["profiles"] == 0
    assert _notices(pipeline) == []


def test_an_execution_stopped_during_the_check_leaves_the_job_its_status(pipeline):
    """The execution now outlives the final status by the check's waits: stopping it by hand then
    (ExecutionAlert's EventBridge event) cuts the check short, it does not fail a finished job."""
    run = pipeline.run(visitors(3))
    job_id = run.job["jobId"]
    store = DynamoJobStore(pipeline.stack.jobs_table)
    store.update_job(job_id, {"landingCheck": {"status": "WAITING", "sampled": 3, "round": 0}})
    event = json.loads(event_path("execution_alert_execution_aborted.json").read_text())
    event["detail"].update(name=job_id, status="ABORTED")
    pipeline.messages()  # what the job itself sent, if anything

    alert = load_function("execution_alert").lambda_handler(event, FakeContext())

    assert alert == {"jobId": job_id, "notified": False}
    job = pipeline.job(job_id)
    assert job["status"] == "COMPLETE" and "reason" not in job
    assert job["landingCheck"] == {
        "status": "FAILED",
        "sampled": 0,
        "reason": "not finished: the execution ended ABORTED during the check",
    }
    assert pipeline.summary(job)["status"] == "COMPLETE"
    assert pipeline.messages() == []
    # A check that had finished keeps its figures.
    store.update_job(job_id, {"landingCheck": run.job["landingCheck"]})
    assert load_function("execution_alert").lambda_handler(event, FakeContext())["notified"] is False
    assert pipeline.job(job_id)["landingCheck"] == run.job["landingCheck"]


def test_pc_id_profiles_are_read_through_their_own_path_and_third_party_ids_through_theirs(pipeline):
    pipeline.setting(landing_check_sample_rows=4)
    by_pc_id = pipeline.run(b"pcId,tier\n" + b"".join(b"%d_0,gold\n" % i for i in range(1, 5)))
    by_third_party_id = pipeline.run(visitors(4))

    for run in (by_pc_id, by_third_party_id):
        assert run.job["landingCheck"]["verified"] == 4, run.job["landingCheck"]
    paths = [r["path"] for r in pipeline.emulator.requests if r["endpoint"] == "profiles"]
    assert sorted(paths[:4]) == [f"/rest/v1/profiles/{i}_0" for i in range(1, 5)]
    assert sorted(paths[4:]) == [f"/rest/v1/profiles/thirdPartyId/{visitor_id(i)}" for i in range(1, 5)]
    assert {r["client"] for r in pipeline.emulator.requests if r["endpoint"] == "profiles"} == {CLIENT}
