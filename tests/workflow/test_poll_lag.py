"""The report closes behind Target: through the real state machine on the virtual clock, a batch
Target completes after N seconds is noticed within max(60 s, 25% of N), in the polls the schedule
promises (at most about 40 for a full day)."""

from __future__ import annotations

from datetime import datetime

import pytest

from profile_sync.poll_schedule import poll_times
from profile_sync.settings import Settings

HEADER = "thirdPartyId,tier\n"


@pytest.mark.parametrize("processing", [120, 8 * 60, 3600, 6 * 3600, 24 * 3600 - 60])
def test_the_report_lags_target_by_at_most_the_bound(pipeline, processing: int) -> None:
    pipeline.emulator.configure(seconds_until_complete=processing)

    run = pipeline.run((HEADER + "CRM-1,gold\nCRM-2,silver\n").encode())

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE"
    batch = run.batches[0]
    took = (
        datetime.fromisoformat(batch["endedAt"]) - datetime.fromisoformat(batch["submittedAt"])
    ).total_seconds()
    lag = took - processing
    assert 0 <= lag <= max(60, 0.25 * processing), (processing, took)
    assert batch["polls"] == len(poll_times(Settings(), processing)) <= 40
