"""Progress of a local run: plain lines in a pipe, a redrawn table on a terminal, never a value."""

from __future__ import annotations

import io

from profile_sync_local.progress import Progress, observed


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drive(progress: Progress) -> None:
    progress.validated(
        {"status": "QUEUED", "received": 12, "accepted": 10, "batchCount": 2, "rejected": 1, "skipped": 1}
    )
    handlers = observed(
        {
            "ReserveQuota": lambda e, c: {"granted": False, "waitSeconds": 7 * 3600},
            "SubmitBatch": lambda e, c: {"done": False, "polls": 0, "delaySeconds": 60},
            "PollBatch": lambda e, c: {
                "done": True,
                "end": "complete",
                "counts": {"succeeded": 4, "failed": 1},
            },
        },
        progress,
    )
    batch = {"batch": {"batchIndex": 1, "rows": 5, "key": "jobs/j/batches/batch-00001.txt"}}
    assert handlers["ReserveQuota"](batch, None) == {"granted": False, "waitSeconds": 7 * 3600}
    handlers["SubmitBatch"](batch, None)
    handlers["PollBatch"](batch, None)
    progress.finished({"status": "COMPLETE_WITH_ERRORS"})


def test_a_pipe_gets_one_plain_line_per_change_at_simulated_time():
    out = io.StringIO()
    drive(Progress(out, lambda: 3600.0))
    assert out.getvalue().splitlines() == [
        "[01:00:00] validated 12 rows: 10 accepted in 2 batch file(s), 1 rejected, 1 skipped",
        "[01:00:00] batch 1 (5 rows): waiting 7 h for the daily quota",
        "[01:00:00] batch 1 (5 rows): uploaded, waiting for Target",
        "[01:00:00] batch 1 (5 rows): complete: succeeded 4, failed 1",
        "[01:00:00] job COMPLETE_WITH_ERRORS",
    ]
    assert "\x1b" not in out.getvalue()


def test_a_terminal_gets_a_table_redrawn_in_place():
    out = Terminal()
    drive(Progress(out, lambda: 0.0))
    text = out.getvalue()
    assert "\x1b[2F\x1b[J" in text  # the two-line table (clock + batch 1) is cleared before each redraw
    assert text.rstrip().endswith("batch    1          5 rows  complete: succeeded 4, failed 1")


def test_the_landing_check_shows_its_rounds_and_its_figures_never_an_id():
    out = io.StringIO()
    progress = Progress(out, lambda: 0.0)
    figures = {"sampled": 20, "verified": 18, "mismatched": 1, "notVisible": 1, "unchecked": 0, "rounds": 2}
    answers = iter(
        [
            {"done": False, "round": 1, "waitSeconds": 300},
            {"done": True, "round": 2, "waitSeconds": 0, "result": figures},
            {"done": True, "round": 0, "waitSeconds": 0, "result": {"sampled": 0, "reason": "off (...)"}},
        ]
    )
    check = observed({"LandingCheck": lambda e, c: next(answers)}, progress)["LandingCheck"]
    for _ in range(3):
        check({"jobId": "j", "landing": {"round": 0}}, None)
    assert out.getvalue().splitlines() == [
        "[00:00:00] landing check: read 1 in 300 s",
        "[00:00:00] landing check: 18 of 20 sampled profiles verified, 1 mismatched, 1 not yet visible, "
        "0 unchecked",
        "[00:00:00] landing check off (...)",
    ]
