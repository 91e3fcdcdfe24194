"""`make security-scan` holds checkov's findings to the baseline: anything new or stale fails."""

from __future__ import annotations

import importlib.util
import json

import yaml

from profile_sync_local.stack.project import ROOT

GATE = ROOT / "local" / "checkov" / "gate.py"


def _gate():
    spec = importlib.util.spec_from_file_location("checkov_gate", GATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(*failed: tuple[str, str], parsing_errors: int = 0, resources: int = 30) -> dict:
    return {
        "check_type": "cloudformation",
        "summary": {
            "passed": 40,
            "failed": len(failed),
            "parsing_errors": parsing_errors,
            "resource_count": resources,
        },
        "results": {
            "failed_checks": [{"check_id": c, "resource": r, "check_name": "a check"} for c, r in failed]
        },
    }


BASELINE = {
    "CKV_AWS_117": {"reason": "no VPC needed", "resources": ["AWS::Serverless::Function.*"]},
    "CKV_AWS_21": {
        "reason": "versions would keep personal data",
        "resources": ["AWS::S3::Bucket.DropBucket"],
    },
}
ACCEPTED = (("CKV_AWS_117", "AWS::Serverless::Function.Ingest"), ("CKV_AWS_21", "AWS::S3::Bucket.DropBucket"))


def test_findings_the_baseline_accepts_pass() -> None:
    counts, problems = _gate().judge(_report(*ACCEPTED), BASELINE)
    assert problems == []
    assert counts == {"passed": 40, "failed": 2, "accepted": 2, "new": 0, "resources": 30}


def test_a_new_finding_fails_even_for_a_check_accepted_elsewhere() -> None:
    counts, problems = _gate().judge(_report(*ACCEPTED, ("CKV_AWS_21", "AWS::S3::Bucket.Other")), BASELINE)
    assert counts["new"] == 1
    assert problems == ["CKV_AWS_21 AWS::S3::Bucket.Other: a check (not in the baseline)"]


def test_a_stale_entry_a_reasonless_one_an_unparsed_or_empty_scan_fail() -> None:
    gate = _gate()
    _, problems = gate.judge(_report(ACCEPTED[0]), BASELINE)
    assert problems == [
        "baseline entry CKV_AWS_21 AWS::S3::Bucket.DropBucket accepts no finding any more: remove it"
    ]
    _, problems = gate.judge(
        _report(*ACCEPTED), {**BASELINE, "CKV_AWS_21": {"resources": ["AWS::S3::Bucket.*"]}}
    )
    assert problems == ["baseline entry CKV_AWS_21 gives no reason"]
    _, problems = gate.judge(_report(*ACCEPTED, parsing_errors=1), BASELINE)
    assert problems == ["checkov could not parse 1 file(s)"]
    _, problems = gate.judge(_report(resources=0), {})
    assert len(problems) == 1 and "scanned no resource" in problems[0]


def test_main_exits_1_on_a_problem_and_prints_the_counts(tmp_path, capsys) -> None:
    gate = _gate()
    report, baseline = tmp_path / "report.json", tmp_path / "baseline.yaml"
    baseline.write_text(yaml.safe_dump(BASELINE))
    report.write_text(json.dumps(_report(*ACCEPTED)))
    assert gate.main(["gate", str(report), str(baseline)]) == 0
    assert "2 failed (2 accepted by the baseline, 0 new)" in capsys.readouterr().out
    report.write_text(json.dumps(_report(*ACCEPTED, ("CKV_AWS_18", "AWS::S3::Bucket.DropBucket"))))
    assert gate.main(["gate", str(report), str(baseline)]) == 1
    assert "CKV_AWS_18 AWS::S3::Bucket.DropBucket" in capsys.readouterr().err


def test_the_projects_baseline_is_short_and_says_why_for_every_entry() -> None:
    baseline = yaml.safe_load((ROOT / "local" / "checkov" / "baseline.yaml").read_text())
    assert 0 < len(baseline) <= 12
    for check, entry in baseline.items():
        assert check.startswith("CKV_"), check
        assert entry["reason"] and "\n" not in entry["reason"], check
        assert entry["resources"], check
    # What the stack fixed is not accepted: encrypted queue, rotating key, no admin policy.
    assert not {"CKV_AWS_27", "CKV_AWS_7", "CKV_AWS_33", "CKV_AWS_1", "CKV_AWS_107"} & set(baseline)
