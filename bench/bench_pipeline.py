"""The pipeline's tables: report lag and poll cost per batch, the whole run at growing sizes, and what
a job costs per 1M rows.

    .venv/bin/python bench/bench_pipeline.py                         # 100k, 1M, 3M (several minutes)
    .venv/bin/python bench/bench_pipeline.py --rows 100000 1000000

Each run is `profile-sync run` (built-in emulator, virtual clock) in a fresh subprocess that reports
its own wall time, CPU time (all its threads) and peak RSS. The machine's load average is printed
beside every table: on a shared machine wall time grows with the load while CPU time barely does,
so compare rows of one table, not runs of different days.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_validate import data_file  # noqa: E402 (the bench's own generator and files)

PROCESSING = {"2 min": 120, "10 min": 600, "1 h": 3600, "6 h": 6 * 3600, "24 h": 24 * 3600}
MAX_WALL_SECONDS_1M = 30.0
MAX_PEAK_MIB = 1024.0
MAX_USD_PER_1M = 0.005


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.2f} {five:.2f} {fifteen:.2f}"


def child(path: Path, out: Path, processing: float, polls: int, landing_rows: str) -> None:
    from profile_sync_local.emulator import EmulatorConfig  # noqa: PLC0415 (in the child only)
    from profile_sync_local.run import run_local  # noqa: PLC0415

    start = time.perf_counter()
    config = EmulatorConfig(seed=1, polls_until_complete=polls, seconds_until_complete=processing)
    settings = {"LANDING_CHECK_SAMPLE_ROWS": landing_rows} if landing_rows else None
    result = run_local(path, out_dir=out, emulator_config=config, settings_env=settings)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mib": peak, "result": result}, default=str))


def run(path: Path, processing: float = 0, polls: int = 2, landing_rows: str = "") -> dict:
    """One run in a fresh process; ``landing_rows`` overrides LANDING_CHECK_SAMPLE_ROWS ("" = default)."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as out:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(path), out, str(processing), str(polls), landing_rows],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def small_file(rows: int = 1000) -> Path:
    path = Path(tempfile.gettempdir()) / f"bench-poll-{rows}.csv"
    path.write_text("thirdPartyId,tier\n" + "".join(f"CRM-{i},gold\n" for i in range(rows)))
    return path


def poll_table() -> bool:
    from profile_sync_local.costs import PRICES  # noqa: PLC0415

    price = PRICES["usd"]["step_functions_standard_transition"]
    print(f"\nReport lag behind Target, one batch (virtual clock; {load()})")
    head = ("Target takes", "lag s", "bound s", "polls", "transitions", "$ transitions")
    print("  {:<12} {:>7} {:>8} {:>6} {:>12} {:>14}".format(*head))
    ok = True
    path = small_file()
    for name, seconds in PROCESSING.items():
        # The report is written at Finalize. The landing check runs after it and waits its own
        # LANDING_CHECK_DELAY_SECONDS before reading profiles back: off here, so the run ends with
        # the report and its length minus Target's time is the report's lag.
        r = run(path, processing=seconds, polls=0, landing_rows="0")["result"]
        lag = r["simulated_seconds"] - seconds
        bound = max(60, 0.25 * seconds)
        t = r["state_transitions"]
        per_batch = t["child_states"] + t["child_executions"]  # the child execution's own
        polls = r["batches"][0]["polls"]
        ok &= 0 <= lag <= bound and polls <= 40 and r["status"] == "COMPLETE"
        print(f"  {name:<12} {lag:>7} {bound:>8.0f} {polls:>6} {per_batch:>12} {per_batch * price:>14.5f}")
    return ok


def pipeline_table(sizes: list[int]) -> bool:
    print(f"\nprofile-sync run, built-in emulator, virtual clock ({load()})")
    print(
        f"  {'rows':>10} {'wall s':>7} {'cpu s':>6} {'peak MiB':>9} {'rows/s':>9} "
        f"{'AWS $':>8} {'$/1M -T':>9}  "
        "cost items (-T: without the Lambda time waiting for Target)"
    )
    ok = True
    for rows in sizes:
        s = run(data_file(rows))
        r, cost = s["result"], s["result"]["cost"]
        per_1m = cost["usd_without_target_time"] / r["received"] * 1_000_000
        items = ", ".join(f"{k} {v:.5f}" for k, v in cost["items_usd"].items())
        print(
            f"  {rows:>10,} {s['wall']:>7.1f} {s['cpu']:>6.1f} {s['peak_mib']:>9.0f} "
            f"{rows / s['wall']:>9,.0f} "
            f"{cost['usd']:>8.5f} {per_1m:>9.5f}  {items}",
            flush=True,
        )
        if rows == 1_000_000:
            ok &= s["wall"] <= MAX_WALL_SECONDS_1M and s["peak_mib"] <= MAX_PEAK_MIB
            ok &= per_1m <= MAX_USD_PER_1M
            print(
                f"  1M rows: wall {s['wall']:.1f} s (goal <= {MAX_WALL_SECONDS_1M:.0f}; "
                f"cpu {s['cpu']:.1f} s), "
                f"peak {s['peak_mib']:.0f} MiB "
                f"(goal < {MAX_PEAK_MIB:.0f}), ${per_1m:.4f} per 1M rows (goal <= {MAX_USD_PER_1M}); "
                f"Lambda seconds measured here: {cost['quantities']['lambda_seconds']}, of which waiting for "
                f"Target: {cost['quantities']['lambda_seconds_waiting_for_target']}"
            )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_rows = [int(n) for n in os.environ.get("BENCH_PIPELINE_ROWS", "100000 1000000 3000000").split()]
    parser.add_argument("--rows", type=int, nargs="+", default=default_rows)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(
            Path(args.child[0]), Path(args.child[1]), float(args.child[2]), int(args.child[3]), args.child[4]
        )
        return 0
    ok = poll_table()
    ok &= pipeline_table(sorted(args.rows))
    print("PASS" if ok else "FAIL (see the goals above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
