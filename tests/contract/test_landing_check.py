"""The landing check reads back through the real client, over HTTP, what the emulator applied."""

from __future__ import annotations

import random

from profile_sync.landing import MISMATCHED, NOT_VISIBLE, VERIFIED, draw_sample, read_round, tally
from tests.unit.finished_jobs import finished_job

SOURCE = "thirdPartyId,tier,city\n" + "".join(f"CRM-{i},t{i % 3},C%C3%AEty%20{i}\n" for i in range(1, 13))


def _send(client, objects, files, *, lose=(), stale=()):
    """Send the job's batches; rows of `lose` never reach Target, rows of `stale` carry another tier."""
    for batch in files.batches:
        header, *rows = objects.data[batch["key"]].decode().splitlines()
        kept = []
        for row in rows:
            visitor_id = row.split(",", 1)[0]
            if visitor_id in lose:
                continue
            kept.append(row.replace(",t", ",old-t", 1) if visitor_id in stale else row)
        client.submit_batch(("\n".join([header, *kept]) + "\n").encode())


def test_a_job_that_landed_verifies(client, emulator):
    objects, files = finished_job(SOURCE, batch_max_rows=5)
    _send(client, objects, files)
    sample = draw_sample(files, 20, random.Random(0))
    assert read_round(sample.rows, client.fetch_profile) is None
    assert tally(sample, rounds=1)["verified"] == 12
    assert emulator.calls["profiles"] == 12


def test_lost_and_stale_updates_are_caught_and_read_again(client, emulator):
    objects, files = finished_job(SOURCE, batch_max_rows=5)
    _send(client, objects, files, lose={"CRM-2", "CRM-7"}, stale={"CRM-9"})
    sample = draw_sample(files, 20, random.Random(0))
    read_round(sample.rows, client.fetch_profile)
    outcomes = {row.visitor_id: row.outcome for row in sample.rows}
    assert (outcomes["CRM-2"], outcomes["CRM-7"], outcomes["CRM-9"]) == (NOT_VISIBLE, NOT_VISIBLE, MISMATCHED)
    assert next(r for r in sample.rows if r.visitor_id == "CRM-9").detail == "other value in tier"
    # Target applies the late rows; the next round reads only the three again.
    calls = emulator.calls["profiles"]
    client.submit_batch(b"batch=thirdPartyId,tier,city\nCRM-2,t2,C%C3%AEty%202\nCRM-9,t0,C%C3%AEty%209\n")
    read_round(sample.rows, client.fetch_profile)
    assert emulator.calls["profiles"] - calls == 3
    result = tally(sample, rounds=2)
    assert (result["verified"], result["notVisible"], result["mismatched"]) == (11, 1, 0)
    assert {r.visitor_id for r in sample.rows if r.outcome != VERIFIED} == {"CRM-7"}
