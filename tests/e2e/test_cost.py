"""The cost of every job: `profile-sync run` prices what the job spent at the dated list prices."""

from __future__ import annotations

import json

import pytest

from profile_sync_local.cli import main
from profile_sync_local.costs import PRICES, AwsRequests, LambdaDurations, job_cost, memory_mb
from tests.e2e.test_run import clean_file

USD = PRICES["usd"]


def test_memory_comes_from_the_template() -> None:
    memory = memory_mb()
    assert memory["Ingest"] == 1024 and memory["PollBatch"] == 1024 and memory["ReserveQuota"] == 256
    assert memory["FailBatch"] == 512  # the Globals' MemorySize


def test_the_bill_adds_up_from_its_quantities() -> None:
    durations, requests = LambdaDurations(), AwsRequests()
    durations.add("PollBatch", 2.0)  # 1024 MB: 2 GB-s
    durations.add("ReserveQuota", 0.0004)  # 256 MB, billed as 1 ms
    requests.counts.update(s3_put=3, s3_get=5, dynamodb_wru=10, dynamodb_rru=4, sns_publish=1)
    cost = job_cost(100, durations, requests)
    assert cost["quantities"]["lambda_gb_seconds"] == pytest.approx(2.0, abs=1e-3)
    expected = (
        100 * USD["step_functions_standard_transition"]
        + (2.0 + 0.25 * 0.001) * USD["lambda_gb_second"]
        + 2 * USD["lambda_request"]
        + 3 * USD["s3_put_copy_post_list_request"]
        + 5 * USD["s3_get_and_other_request"]
        + 10 * USD["dynamodb_write_request_unit"]
        + 4 * USD["dynamodb_read_request_unit"]
        + USD["sns_publish_request"]
    )
    assert cost["usd"] == pytest.approx(expected, abs=2e-6)
    assert cost["prices"] == {"as_of": PRICES["as_of"], "region": "us-east-1"}
    assert cost["usd_without_target_time"] == cost["usd"]  # no Target call was timed


def test_the_lambda_time_spent_waiting_for_target_is_told_apart() -> None:
    durations, requests = LambdaDurations(), AwsRequests()
    durations.add("SubmitBatch", 3.0, target_seconds=2.0)  # 1024 MB
    cost = job_cost(0, durations, requests)
    assert cost["usd"] - cost["usd_without_target_time"] == pytest.approx(
        2.0 * USD["lambda_gb_second"], abs=2e-6
    )
    assert cost["quantities"]["lambda_seconds_waiting_for_target"] == {"SubmitBatch": 2.0}


def test_a_run_reports_what_its_job_would_cost(tmp_path, capsys) -> None:
    source = clean_file(tmp_path / "ten.csv", 10)
    code = main(["run", str(source), "--out", str(tmp_path / "out"), "--json"])

    result = json.loads(capsys.readouterr().out)
    assert code == 0, result["reason"]
    cost = result["cost"]
    q = cost["quantities"]
    assert q["state_transitions"] == result["state_transitions"]["total"]
    assert q["lambda_invocations"] == sum(result["lambda_invocations"].values())
    assert set(q["lambda_seconds"]) == set(result["lambda_invocations"])
    assert cost["items_usd"]["step_functions"] == pytest.approx(
        q["state_transitions"] * USD["step_functions_standard_transition"], abs=1e-6
    )
    # The ingest reads the drop and writes a batch; submit reads it; finalize writes the report.
    assert q["s3_put_class_requests"] >= 3 and q["s3_get_class_requests"] >= 2
    assert q["dynamodb_write_units"] >= 5 and q["dynamodb_read_units"] > 0
    assert q["sns_publishes"] == 0  # a clean job sends no alert
    assert cost["usd"] == pytest.approx(sum(cost["items_usd"].values()), abs=1e-5)
    waiting = q["lambda_seconds_waiting_for_target"]
    assert 0 < waiting["SubmitBatch"] <= q["lambda_seconds"]["SubmitBatch"]
    assert 0 < waiting["PollBatch"] <= q["lambda_seconds"]["PollBatch"]
    assert waiting["Ingest"] == 0  # the ingest never calls Target
    assert cost["usd_without_target_time"] <= cost["usd"]  # rounded to 6 decimals: small jobs tie

    main(["run", str(source), "--out", str(tmp_path / "out2")])
    assert "AWS cost ~$" in capsys.readouterr().out
