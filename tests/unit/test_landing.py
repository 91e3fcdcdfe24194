"""The landing check's rules: the sample, the comparison, the rounds and the figures."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from profile_sync.adobe_target.errors import TargetAuthError, TargetRejected, TargetRetryLater
from profile_sync.adobe_target.responses import BatchStatus
from profile_sync.landing import (
    MISMATCHED,
    NOT_VISIBLE,
    UNCHECKED,
    VERIFIED,
    Sample,
    SampledRow,
    alert_needed,
    compare,
    draw_sample,
    not_verified_share,
    read_round,
    rows_report,
    tally,
    unsettled,
)
from profile_sync.model import BatchEnd
from tests.unit.finished_jobs import finished_job
from tests.unit.test_redrive import ENDS, SOURCE

# SOURCE's succeeded rows: CRM-1, CRM-3 (batch 1; CRM-2 failed) and CRM-10 (batch 4).
SUCCEEDED_IDS = {"CRM-1", "CRM-3", "CRM-10"}


def test_the_sample_holds_only_succeeded_rows_with_their_decoded_values():
    _, files = finished_job(SOURCE, ENDS)
    sample = draw_sample(files, 20, random.Random(1))
    assert sample.eligible == 3
    assert {row.visitor_id for row in sample.rows} == SUCCEEDED_IDS
    by_id = {row.visitor_id: row for row in sample.rows}
    assert by_id["CRM-1"].expected == {"tier": ["gold"], "city": ["Berlin"]}
    assert by_id["CRM-3"].expected == {"tier": ["gold"]}  # an empty value is never compared
    assert (by_id["CRM-10"].line, by_id["CRM-10"].batch_index, by_id["CRM-10"].id_type) == (
        12,
        4,
        "thirdPartyId",
    )


def test_size_zero_is_off_and_a_job_without_successes_has_nothing_to_draw():
    _, files = finished_job(SOURCE, ENDS)
    assert draw_sample(files, 0).rows == []
    _, failed = finished_job(SOURCE, {i: (BatchEnd.STUCK, BatchStatus("stuck")) for i in range(1, 5)})
    assert (draw_sample(failed, 20).rows, draw_sample(failed, 20).eligible) == ([], 0)


def test_every_succeeded_row_is_equally_likely():
    source = "thirdPartyId,a\n" + "".join(f"id{i},v{i}\n" for i in range(12))
    _, files = finished_job(source, {2: (BatchEnd.VANISHED, None)}, batch_max_rows=4)  # ids 4-7 pending
    picks = Counter()
    for seed in range(600):
        for row in draw_sample(files, 2, random.Random(seed)).rows:
            picks[row.visitor_id] += 1
    assert set(picks) == {f"id{i}" for i in (0, 1, 2, 3, 8, 9, 10, 11)}
    assert min(picks.values()) > 100 and max(picks.values()) < 200  # 150 expected each


def test_batches_that_read_nothing_are_not_opened():
    source = "thirdPartyId,a\n" + "".join(f"id{i},v{i}\n" for i in range(30))
    objects, files = finished_job(source, batch_max_rows=10)
    objects.opened.clear()
    sample = draw_sample(files, 1, random.Random(3))
    batch_files = [key for key in objects.opened if "/batches/" in key]
    assert len(sample.rows) == 1 and len(set(batch_files)) == 1


def test_v1_batches_that_counted_rows_without_naming_them_are_left_out():
    ends = {1: (BatchEnd.COMPLETE, BatchStatus("complete", successful=2, not_found=1, failed=0))}
    _, files = finished_job(SOURCE, ends, api="v1")
    sample = draw_sample(files, 20, random.Random(0))
    assert sample.skipped_batches == [1]
    assert "CRM-1" not in {row.visitor_id for row in sample.rows}


def test_an_id_sent_twice_accepts_either_value():
    source = "thirdPartyId,tier,city\nCRM-1,gold,Oslo\nCRM-2,x,y\nCRM-1,silver,\n"
    _, files = finished_job(source, batch_max_rows=2)  # CRM-1's rows in two batches: any order
    assert files.job["duplicateIds"] == 1
    sample = draw_sample(files, 20, random.Random(0))
    crm1 = next(row for row in sample.rows if row.visitor_id == "CRM-1")
    assert crm1.expected == {"tier": ["gold", "silver"], "city": ["Oslo"]}
    assert len(sample.rows) == 2  # chosen twice, read once


def test_compare_names_attributes_never_values():
    expected = {"tier": ["gold"], "city": ["São Paulo"], "note": ["a&b"]}
    shown = {"tier": {"value": "gold"}, "profile.city": {"value": "São Paulo"}, "note": {"value": "a&b"}}
    assert compare(expected, {"profileAttributes": shown}) == (VERIFIED, "")
    outcome, detail = compare(expected, {"profileAttributes": {"tier": {"value": "silver"}}})
    assert outcome == MISMATCHED
    assert detail == "other value in tier; missing city, note"
    assert "silver" not in detail and "gold" not in detail
    assert compare(expected, None)[0] == NOT_VISIBLE
    assert compare({"n": ["7"]}, {"profileAttributes": {"n": {"value": 7}}})[0] == VERIFIED


def _row(visitor_id: str, **kwargs) -> SampledRow:
    return SampledRow("thirdPartyId", visitor_id, 1, 2, {"a": ["x"]}, **kwargs)


def test_a_round_reads_only_what_is_not_verified_and_keeps_rows_it_could_not_read():
    rows = [_row("ok", outcome=VERIFIED), _row("late"), _row("busy"), _row("bad")]
    calls = []

    def fetch(id_type, visitor_id):
        calls.append(visitor_id)
        if visitor_id == "busy":
            raise TargetRetryLater("busy", status=503, attempts=5)
        if visitor_id == "bad":
            raise TargetRejected("no", status=400)
        return None

    assert read_round(rows, fetch) is None
    assert calls == ["late", "busy", "bad"]
    assert [r.outcome for r in rows] == [VERIFIED, NOT_VISIBLE, "", UNCHECKED]
    assert "HTTP 503" in rows[2].detail
    assert unsettled(rows) == 3


def test_an_auth_failure_stops_the_round():
    rows = [_row("a"), _row("b")]
    calls = []

    def fetch(id_type, visitor_id):
        calls.append(visitor_id)
        raise TargetAuthError("refused", status=401)

    assert "refused authentication" in read_round(rows, fetch)
    assert calls == ["a"]


def test_tally_and_the_notice():
    rows = [
        _row("1", outcome=VERIFIED),
        _row("2", outcome=VERIFIED),
        _row("3", outcome=MISMATCHED),
        _row("4", outcome=NOT_VISIBLE),
        _row("5"),
    ]
    result = tally(Sample(rows, eligible=100), rounds=3)
    assert result == {
        "sampled": 5,
        "eligible": 100,
        "verified": 2,
        "mismatched": 1,
        "notVisible": 1,
        "unchecked": 1,
        "rounds": 3,
    }
    assert not_verified_share(result) == 0.6
    assert alert_needed(result, 0.5) and not alert_needed(result, 0.6)
    assert not alert_needed(tally(Sample([], 0), rounds=0), 0.0)
    assert [r["outcome"] for r in rows_report(Sample(rows, 100))] == [MISMATCHED, NOT_VISIBLE, UNCHECKED]


def test_the_sample_survives_its_json_round_trip():
    _, files = finished_job(SOURCE, ENDS)
    sample = draw_sample(files, 20, random.Random(1))
    assert Sample.from_dict(sample.to_dict()) == sample


@pytest.mark.parametrize("mode", ["raw", "encoded"])
def test_values_are_compared_decoded_in_both_input_modes(mode):
    value = '"a b&c,ü"' if mode == "raw" else "a%20b%26c%2C%C3%BC"
    _, files = finished_job(f"thirdPartyId,note\nCRM-1,{value}\n", input_mode=mode)
    (row,) = draw_sample(files, 5).rows
    assert row.expected == {"note": ["a b&c,ü"]}
