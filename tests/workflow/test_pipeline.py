"""The real state machine, end to end: every row accounted for, the report matches Target's store."""

from __future__ import annotations

from tests.workflow.conftest import CLIENT


def visitors(count: int, start: int = 1, extra: str = "") -> bytes:
    rows = "".join(f"CRM-{i:06d},gold,{i}.50,M%C3%BCnchen{extra}\n" for i in range(start, start + count))
    return ("thirdPartyId,tier,value,city\n" + rows).encode()


def test_multi_batch_job_completes_and_the_report_matches_the_profile_store(pipeline):
    pipeline.setting(batch_max_rows=4)
    body = visitors(10) + b"CRM-BAD,has space,1,x\n"

    run = pipeline.run(body)

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    job = run.job
    assert job["status"] == "COMPLETE_WITH_ERRORS"  # one rejected row
    assert (job["received"], job["rejected"], job["succeeded"], job["failed"], job["pending"]) == (
        11,
        1,
        10,
        0,
        0,
    )
    assert [b["rows"] for b in run.batches] == [4, 4, 2]
    assert {b["status"] for b in run.batches} == {"COMPLETE"}
    for i in range(1, 11):
        profile = pipeline.emulator.store.record(CLIENT, "thirdPartyId", f"CRM-{i:06d}")
        assert profile is not None
    rows = pipeline.report_rows(job)
    assert [(r["line"], r["outcome"]) for r in rows] == [("12", "rejected")]
    summary = pipeline.summary(job)
    assert summary["account"] == {
        "received": 11,
        "rejected": 1,
        "skipped": 0,
        "unchanged": 0,
        "succeeded": 10,
        "failed": 0,
        "not_found": 0,
        "pending": 0,
    }
