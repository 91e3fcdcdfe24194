"""Delta sync through the whole pipeline: ingest, the real ASL, the emulator, finalize's snapshot update."""

from __future__ import annotations

from profile_sync.aws.delta import DynamoSnapshotPointers

HEADER = b"thirdPartyId,tier,city\n"


def rows(n: int, tier: bytes = b"gold") -> dict[bytes, bytes]:
    return {b"CRM-%04d" % i: tier + b",Berlin" for i in range(n)}


def body(values: dict[bytes, bytes]) -> bytes:
    return HEADER + b"".join(ident + b"," + v + b"\n" for ident, v in values.items())


def balanced(account: dict) -> bool:
    parts = ("rejected", "skipped", "unchanged", "succeeded", "failed", "not_found", "pending")
    return account["received"] == sum(account[name] for name in parts)


def test_the_same_file_twice_sends_nothing_the_second_time(pipeline):
    first = pipeline.run(body(rows(50)), folders="delta=on/")
    assert first.job["status"] == "COMPLETE" and first.job["succeeded"] == 50
    assert first.job["deltaUpdate"] == {"version": 1, "confirmed": 50, "unknown": 0, "attempts": 1}
    batches_before = sum(pipeline.emulator.posted_batches().values())

    second = pipeline.run(body(rows(50)), folders="delta=on/")
    job = second.job
    assert job["status"] == "COMPLETE", job.get("reason")
    assert (job["received"], job["unchanged"], job["succeeded"], job["batchCount"]) == (50, 50, 0, 0)
    assert sum(pipeline.emulator.posted_batches().values()) == batches_before  # nothing sent
    summary = pipeline.summary(job)
    assert summary["account"]["unchanged"] == 50 and balanced(summary["account"])
    assert job["deltaUpdate"]["skipped"] == "no confirmed rows"


def test_with_two_percent_changed_only_those_rows_are_sent(pipeline):
    pipeline.run(body(rows(200)), folders="delta=on/")
    changed = rows(200)
    for ident in list(changed)[::50]:
        changed[ident] = b"silver,Berlin"
    run = pipeline.run(body(changed), folders="delta=on/")
    job = run.job
    assert (job["unchanged"], job["succeeded"]) == (196, 4) and job["status"] == "COMPLETE"
    sent = pipeline.read(run.batches[0]["key"]).splitlines()[1:]
    assert sent == [ident + b",silver,Berlin" for ident in list(changed)[::50]]
    assert balanced(pipeline.summary(job)["account"])
    assert DynamoSnapshotPointers(pipeline.stack.jobs_table).get("acme", "thirdPartyId").version == 2


def test_rows_target_failed_are_sent_again_next_time_and_only_they(pipeline):
    pipeline.emulator.configure(fail_ids=frozenset({"CRM-0003", "CRM-0011"}))
    first = pipeline.run(body(rows(20)), folders="delta=on/")
    assert (first.job["succeeded"], first.job["failed"]) == (18, 2)
    assert first.job["deltaUpdate"]["confirmed"] == 18
    pipeline.emulator.configure(fail_ids=frozenset())
    second = pipeline.run(body(rows(20)), folders="delta=on/")
    assert (second.job["unchanged"], second.job["succeeded"]) == (18, 2)
    sent = pipeline.read(second.batches[0]["key"]).splitlines()[1:]
    assert sent == [b"CRM-0003,gold,Berlin", b"CRM-0011,gold,Berlin"]
    # Now all confirmed: a third run sends nothing.
    third = pipeline.run(body(rows(20)), folders="delta=on/")
    assert third.job["unchanged"] == 20 and third.job["batchCount"] == 0


def test_a_stuck_batch_confirms_nothing(pipeline):
    pipeline.emulator.configure(stuck_share=1.0)
    first = pipeline.run(body(rows(10)), folders="delta=on/")
    assert first.job["failed"] == 10
    assert first.job["deltaUpdate"]["skipped"] == "no confirmed rows"
    pipeline.emulator.configure(stuck_share=0.0)
    again = pipeline.run(body(rows(10)), folders="delta=on/")
    assert again.job["unchanged"] == 0 and again.job["succeeded"] == 10


def test_a_snapshot_update_that_fails_leaves_the_job_as_it_is_and_its_rows_are_sent_again(
    pipeline, monkeypatch
):
    def refused(self, *args, **kwargs):
        raise RuntimeError("AccessDenied on the pointer")

    with monkeypatch.context() as patch:
        patch.setattr(DynamoSnapshotPointers, "put", refused)
        first = pipeline.run(body(rows(10)), folders="delta=on/")
    assert first.job["status"] == "COMPLETE" and first.job["succeeded"] == 10
    assert first.job["deltaUpdate"]["error"] == "RuntimeError: AccessDenied on the pointer"
    assert "sent again next time" in first.job["deltaUpdate"]["skipped"]
    again = pipeline.run(body(rows(10)), folders="delta=on/")
    assert again.job["unchanged"] == 0 and again.job["succeeded"] == 10
