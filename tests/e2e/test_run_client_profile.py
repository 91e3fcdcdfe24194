"""profile-sync run --client-profile: a CRM export as it was exported, through the whole local pipeline."""

from __future__ import annotations

import csv
import json

from profile_sync_local.cli import main
from profile_sync_local.stack.project import ROOT

SAMPLES = ROOT / "local" / "samples"


def test_the_salesforce_sample_runs_end_to_end_with_its_profile(tmp_path, capsys):
    profile = json.loads((SAMPLES / "salesforce_contacts_eu.profile.json").read_text())
    # A profile's own token secret and base URL are the deployed stack's business: a local run
    # ignores them and uses its own Target.
    profile_file = tmp_path / "p.json"
    profile_file.write_text(json.dumps(profile | {"target_base_url": "https://acme-eu.tt.omtrdc.net"}))
    code = main(
        [
            "run",
            str(SAMPLES / "salesforce_contacts_eu.csv"),
            "--client",
            "acme-eu",
            "--client-profile",
            str(profile_file),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 1, result  # completed with errors: the sample's two damaged rows
    assert result["status"] == "COMPLETE_WITH_ERRORS" and result["profile_version"] == 1
    assert (result["received"], result["rejected"], result["skipped"], result["succeeded"]) == (8, 2, 1, 5)
    rows = list(csv.DictReader((tmp_path / "out" / "rows.csv").open(encoding="utf-8")))
    assert sorted((r["line"], r["outcome"]) for r in rows) == [("10", "rejected"), ("9", "rejected")]


def test_run_with_a_profile_that_is_refused_runs_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rename": {"a": "b c"}}))
    code = main(["run", str(SAMPLES / "visitors.csv"), "--client-profile", str(bad), "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "profile refused" in captured.err and "raw space" in captured.err
