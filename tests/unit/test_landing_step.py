"""The landing check's rounds and the automatic re-drive over in-memory ports (the wire: tests/workflow)."""

from __future__ import annotations

from pathlib import Path

from profile_sync.adobe_target.errors import TargetAuthError
from profile_sync.landing_step import (
    LandingPorts,
    check_landing,
    landing_check_failed,
    sample_key,
)
from profile_sync.settings import Settings
from tests.unit.finished_jobs import MemoryObjects, finished_job
from tests.unit.test_redrive import ENDS, SOURCE


class Objects(MemoryObjects):
    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        self.data[key] = Path(path).read_bytes()


class Jobs:
    def __init__(self, job: dict, batches: list[dict]) -> None:
        self.job, self.batches = job, batches

    def get_job(self, job_id: str) -> dict | None:
        return dict(self.job) if job_id == self.job["jobId"] else None

    def update_job(self, job_id: str, changes: dict, *, expect: dict | None = None) -> bool:
        _no_floats(changes)  # as DynamoDB: numbers are whole or Decimal
        if any((self.job.get(k) or "") != v for k, v in (expect or {}).items()):
            return False
        self.job.update(changes)
        return True

    def list_batches(self, job_id: str) -> list[dict]:
        return self.batches


def _no_floats(value: object) -> None:
    if isinstance(value, float):
        raise TypeError("Float types are not supported. Use Decimal types instead.")
    for inner in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _no_floats(inner)


class Target:
    """Target's profiles as a dict; `lost` ids were never applied."""

    def __init__(self, profiles: dict[str, dict[str, str]]) -> None:
        self.profiles, self.reads, self.refuse = profiles, [], False

    def fetch_profile(self, id_type: str, visitor_id: str) -> dict | None:
        self.reads.append(visitor_id)
        if self.refuse:
            raise TargetAuthError("no", status=401)
        attrs = self.profiles.get(visitor_id)
        return None if attrs is None else {"profileAttributes": {k: {"value": v} for k, v in attrs.items()}}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def notify(self, subject: str, message: str) -> bool:
        self.messages.append((subject, message))
        return True


LANDED = {
    "CRM-1": {"tier": "gold", "city": "Berlin"},
    "CRM-3": {"tier": "gold"},
    "CRM-10": {"tier": "gold", "city": "Rio"},
}


def ports_for(profiles: dict, ends=ENDS, **settings) -> tuple[LandingPorts, Jobs, Target, Inbox, Objects]:
    objects, files = finished_job(SOURCE, ends, objects=Objects())
    job = files.job | {
        "succeeded": 3,
        "pending": 3,
        "reportKey": f"jobs/{files.job['jobId']}/report/summary.json",
    }
    objects.put_json(job["reportKey"], {"jobId": job["jobId"], "status": job["status"]})
    jobs, target, inbox = Jobs(job, files.batches), Target(profiles), Inbox()
    ports = LandingPorts(
        settings=Settings(**settings),
        objects=objects,
        jobs=jobs,
        target=lambda code: target,
        notifier=inbox,
    )
    return ports, jobs, target, inbox, objects


def run_check(ports: LandingPorts, job_id: str) -> list[dict]:
    states, state = [], None
    while True:
        state = check_landing(ports, job_id, state)
        states.append(state)
        if state["done"]:
            return states


def test_a_landed_job_verifies_in_one_read_after_the_delay():
    ports, jobs, target, inbox, objects = ports_for(dict(LANDED), landing_check_delay_seconds=120)
    states = run_check(ports, jobs.job["jobId"])
    assert [(s["done"], s["waitSeconds"]) for s in states] == [(False, 120), (True, 0)]
    assert states[-1]["result"]["verified"] == 3
    assert sorted(target.reads) == ["CRM-1", "CRM-10", "CRM-3"]  # one read each
    assert jobs.job["landingCheck"]["status"] == "DONE"
    summary = objects.get_json(jobs.job["reportKey"])
    assert summary["landingCheck"]["verified"] == 3 and summary["landingRows"] == []
    assert not inbox.messages


def test_lost_updates_are_read_again_then_reported_and_notified():
    profiles = {
        "CRM-1": {"tier": "silver", "city": "Berlin"},
        "CRM-10": {"tier": "gold", "city": "Rio"},
    }  # CRM-3 lost
    ports, jobs, target, inbox, objects = ports_for(profiles, landing_check_retries=2)
    states = run_check(ports, jobs.job["jobId"])
    assert len(states) == 4  # draw, then 1 + 2 retries
    assert target.reads.count("CRM-10") == 1 and target.reads.count("CRM-3") == 3
    result = states[-1]["result"]
    assert (result["verified"], result["mismatched"], result["notVisible"]) == (1, 1, 1)
    rows = objects.get_json(jobs.job["reportKey"])["landingRows"]
    assert [(r["line"], r["outcome"], r["detail"]) for r in rows] == [
        (2, "mismatched", "other value in tier"),
        (5, "not_visible", "Target has no profile for this id"),
    ]
    ((subject, message),) = inbox.messages
    assert "67%" in subject and "silver" not in message and "CRM-" not in message
    # What a person does next: find the lines, re-send without delta sync, re-drive the pending rows.
    job_id = jobs.job["jobId"]
    assert f"`profile-sync report {job_id}`" in message and "incoming/demo/delta=off/" in message
    assert f"`profile-sync redrive {job_id}`" in message  # the job has pending rows too
    assert "Unchecked" not in message  # every sampled profile was read


def test_a_late_update_verifies_on_a_retry_and_no_notice_goes_out():
    ports, jobs, target, inbox, _ = ports_for({"CRM-1": LANDED["CRM-1"], "CRM-10": LANDED["CRM-10"]})
    state = check_landing(ports, jobs.job["jobId"])
    state = check_landing(ports, jobs.job["jobId"], state)
    assert not state["done"]
    # What `profile-sync status` shows meanwhile: "checking: 3 sampled profiles, read 1 done".
    assert jobs.job["landingCheck"] == {"status": "READING", "sampled": 3, "round": 1}
    target.profiles["CRM-3"] = {"tier": "gold"}  # Target applied it meanwhile
    state = check_landing(ports, jobs.job["jobId"], state)
    assert state["done"] and state["result"]["verified"] == 3 and state["result"]["rounds"] == 2
    assert not inbox.messages


def test_the_check_is_off_at_zero_and_skips_jobs_with_nothing_to_check():
    ports, jobs, target, _, objects = ports_for(dict(LANDED), landing_check_sample_rows=0)
    assert check_landing(ports, jobs.job["jobId"])["done"]
    assert "off" in jobs.job["landingCheck"]["reason"] and target.reads == []
    assert sample_key(jobs.job["jobId"]) not in objects.data
    ports, jobs, target, _, _ = ports_for(dict(LANDED))
    jobs.job["status"] = "FAILED"
    assert check_landing(ports, jobs.job["jobId"])["result"]["reason"] == "not run: the job ended FAILED"


def test_refused_credentials_end_the_check_without_touching_the_job_status():
    ports, jobs, target, inbox, _ = ports_for(dict(LANDED))
    target.refuse = True
    states = run_check(ports, jobs.job["jobId"])
    result = states[-1]["result"]
    assert "refused authentication" in result["reason"] and result["unchecked"] == 3
    assert jobs.job["status"] == "COMPLETE_WITH_ERRORS"
    assert len(inbox.messages) == 1


def test_a_failed_check_is_recorded_and_the_job_keeps_its_status():
    ports, jobs, _, _, _ = ports_for(dict(LANDED))
    error = {"Error": "TransientAwsError", "Cause": '{"errorMessage": "GetObject: SlowDown"}'}
    state = landing_check_failed(ports, jobs.job["jobId"], error)
    assert state["done"]
    assert jobs.job["landingCheck"] == {
        "status": "FAILED",
        "sampled": 0,
        "reason": "the check failed: TransientAwsError: GetObject: SlowDown",
    }
    assert jobs.job["status"] == "COMPLETE_WITH_ERRORS"
