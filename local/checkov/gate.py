"""Hold checkov's findings on the templates (the Makefile's TEMPLATES) to the accepted baseline
(local/checkov/baseline.yaml).

    python local/checkov/gate.py REPORT.json [BASELINE.yaml]

REPORT is `checkov --output json --soft-fail` (which exits 0 whatever it finds): this decides.
Exit 0 when every failed check is accepted by the baseline; 1 on a finding the baseline does not
accept, on an entry that accepts nothing any more (stale: remove it), on a parsing error or an
empty scan (a scan that saw nothing proves nothing).
"""

from __future__ import annotations

import json
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

BASELINE = Path(__file__).with_name("baseline.yaml")


def judge(report: dict | list, baseline: dict) -> tuple[dict, list[str]]:
    """(counts, problems): one problem per new finding, stale entry or unusable scan."""
    reports = report if isinstance(report, list) else [report]
    problems: list[str] = []
    failed: list[dict] = []
    counts = {"passed": 0, "failed": 0, "accepted": 0, "new": 0, "resources": 0}
    for one in reports:
        summary = one.get("summary", {})
        counts["passed"] += summary.get("passed", 0)
        counts["resources"] += summary.get("resource_count", 0)
        if summary.get("parsing_errors"):
            problems.append(f"checkov could not parse {summary['parsing_errors']} file(s)")
        failed += one.get("results", {}).get("failed_checks", [])
    if not counts["resources"]:
        problems.append("checkov scanned no resource: are the templates there and of the right framework?")
    used: set[tuple[str, str]] = set()
    for finding in failed:
        counts["failed"] += 1
        check, resource = finding["check_id"], finding["resource"]
        entry = baseline.get(check) or {}
        pattern = next((p for p in entry.get("resources", []) if fnmatchcase(resource, p)), None)
        if pattern is None:
            counts["new"] += 1
            problems.append(f"{check} {resource}: {finding.get('check_name', '')} (not in the baseline)")
        else:
            counts["accepted"] += 1
            used.add((check, pattern))
    for check, entry in baseline.items():
        if not (entry or {}).get("reason"):
            problems.append(f"baseline entry {check} gives no reason")
        for pattern in (entry or {}).get("resources", []):
            if (check, pattern) not in used:
                problems.append(f"baseline entry {check} {pattern} accepts no finding any more: remove it")
    return counts, problems


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 3:
        print(__doc__, file=sys.stderr)
        return 2
    report = json.loads(Path(argv[1]).read_text())
    baseline = yaml.safe_load(Path(argv[2] if len(argv) == 3 else BASELINE).read_text()) or {}
    counts, problems = judge(report, baseline)
    print(
        "checkov on the templates: {resources} resources, {passed} checks passed, {failed} failed "
        "({accepted} accepted by the baseline, {new} new)".format(**counts)
    )
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
