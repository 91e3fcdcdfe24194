"""profile-sync run --redrive: the file's rows after the re-drive (profile_sync_local.run.combined)."""

from __future__ import annotations

from profile_sync.model import ACCOUNT_FIELDS
from profile_sync_local.run import combined, exit_code


def account(**counts: int) -> dict:
    rows = {name: counts.get(name, 0) for name in ACCOUNT_FIELDS}
    rows["received"] = sum(rows[name] for name in ACCOUNT_FIELDS[1:])
    return rows


def test_the_re_driven_rows_count_as_the_re_drive_ended_them():
    first = {
        "jobId": "J1",
        "status": "COMPLETE_WITH_ERRORS",
        **account(rejected=2, succeeded=90, failed=5, pending=3),
    }
    taken = {"byOutcome": {"failed": 5, "pending": 3, "not_found": 0}, "resentSucceeded": 0}
    second = {"jobId": "J2", "status": "COMPLETE_WITH_ERRORS", **account(succeeded=7, pending=1)}
    both = combined(first, taken, second)
    assert both == {
        "status": "COMPLETE_WITH_ERRORS",
        "reason": None,
        **account(rejected=2, succeeded=97, pending=1),
    }
    assert both["received"] == first["received"]
    assert exit_code({**first, "combined": both}) == 1


def test_re_sent_v1_batches_do_not_count_their_updated_rows_twice():
    # v1: 10 rows, 4 not found (unnamed): all 10 re-sent through v2; 6 had been updated already.
    first = {"jobId": "J1", "status": "COMPLETE_WITH_ERRORS", **account(succeeded=6, not_found=4)}
    taken = {"byOutcome": {"failed": 0, "pending": 0, "not_found": 4}, "resentSucceeded": 6}
    second = {"jobId": "J2", "status": "COMPLETE", **account(succeeded=10)}
    both = combined(first, taken, second)
    assert both == {"status": "COMPLETE", "reason": None, **account(succeeded=10)}
    assert exit_code({**first, "combined": both}) == 0


def test_a_re_drive_job_that_failed_makes_the_outcome_failed_and_says_which():
    first = {"jobId": "J1", "status": "COMPLETE_WITH_ERRORS", **account(succeeded=8, failed=2)}
    taken = {"byOutcome": {"failed": 2}, "resentSucceeded": 0}
    second = {
        "jobId": "J2",
        "status": "FAILED",
        "reason": "Target refused the credentials",
        **account(failed=2),
    }
    both = combined(first, taken, second)
    assert both["status"] == "FAILED" and both["reason"].startswith(
        "the re-drive job J2 ended FAILED: Target"
    )
    assert exit_code({**first, "combined": both}) == 2
