"""profile-sync run --delta --state DIR: the snapshot and quota counters kept between local runs."""

from __future__ import annotations

import json
from pathlib import Path

from profile_sync_local.cli import main


def write(path: Path, rows: int, changed: frozenset[int] = frozenset()) -> Path:
    lines = [f"CRM-{i:05d},{'silver' if i in changed else 'gold'},Berlin\n" for i in range(rows)]
    path.write_text("thirdPartyId,tier,city\n" + "".join(lines))
    return path


def run(capsys, *args: str) -> tuple[int, dict]:
    code = main(["run", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_same_file_twice_sends_nothing_and_two_percent_changed_sends_only_those(tmp_path, capsys):
    state = tmp_path / "state"
    day1 = write(tmp_path / "day1.csv", 500)
    code, first = run(capsys, str(day1), "--delta", "--state", str(state), "--out", str(tmp_path / "o1"))
    assert code == 0 and first["succeeded"] == 500 and first["unchanged"] == 0
    assert first["delta"]["confirmed"] == 500
    assert (state / "items.json").exists() and any((state / "objects" / "delta").rglob("part-*.gz"))

    code, second = run(capsys, str(day1), "--delta", "--state", str(state), "--out", str(tmp_path / "o2"))
    assert code == 0 and second["status"] == "COMPLETE"
    assert (second["unchanged"], second["succeeded"], second["batches"]) == (500, 0, [])
    assert "batchUpdate" not in second["target_calls"]  # nothing sent

    changed = frozenset(range(0, 500, 50))  # 2%
    day3 = write(tmp_path / "day3.csv", 500, changed)
    code, third = run(capsys, str(day3), "--delta", "--state", str(state), "--out", str(tmp_path / "o3"))
    assert code == 0 and (third["unchanged"], third["succeeded"]) == (490, 10)
    assert sum(b["rows"] for b in third["batches"]) == 10

    # The quota counters came along: the day's rows add up over the three runs.
    items = json.loads((state / "items.json").read_text())
    (quota,) = [item for item in items if item["pk"]["S"].startswith("QUOTA#")]
    assert int(quota["used"]["N"]) == 510


def test_without_state_each_run_starts_from_nothing(tmp_path, capsys):
    day1 = write(tmp_path / "day1.csv", 20)
    for n in range(2):
        code, result = run(capsys, str(day1), "--delta", "--out", str(tmp_path / f"o{n}"))
        assert code == 0 and result["unchanged"] == 0 and result["succeeded"] == 20


def test_the_summary_shows_unchanged_rows(tmp_path, capsys):
    state = tmp_path / "state"
    day1 = write(tmp_path / "day1.csv", 5)
    assert main(["run", str(day1), "--delta", "--state", str(state), "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["run", str(day1), "--delta", "--state", str(state), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "  unchanged           5" in out and "delta snapshot: version 1" in out
