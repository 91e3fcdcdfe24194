"""Benchmark delta sync: a 1M-row daily export with 2% of its rows changed since the last run.

    .venv/bin/python bench/bench_delta.py                    # 1,000,000 rows, 2% changed
    .venv/bin/python bench/bench_delta.py --rows 100000      # quick check

Day 1's file is sent whole and confirmed: the snapshot is built from it. Day 2's file (the same
rows, 2% with a changed value, columns in another order) then goes through what ingest does with
delta on: the engine, the diff against the snapshot, the batches rewritten without the unchanged
rows; then the update that merges the confirmed rows. Each phase of day 2 runs in a fresh
subprocess that reports its own time and peak RSS. Objects are files on local disk, so the times
are the CPU's; S3's transfer is counted in requests and bytes, priced below.

Exits 1 when day 2 does not send exactly the changed rows, or the diff's peak memory passes
MAX_PEAK_MIB.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from profile_sync.delta import Pointer, confirmed_bits, diff_batches, rebatch, update_snapshot
from profile_sync.settings import Settings
from profile_sync.validate import BatchInfo, validate_and_split

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "delta"
MAX_PEAK_MIB = 256.0
PARTITIONS = 256
# us-east-1 list prices.
LAMBDA_GB_SECOND = 0.0000166667
LAMBDA_MEMORY_GB = 1.0  # the ingest function's MemorySize (1024 MB)
S3_GET_PER_1000 = 0.0004
S3_PUT_PER_1000 = 0.005
S3_GB_MONTH = 0.023
DYNAMODB_READ = 0.25 / 1_000_000
DYNAMODB_WRITE = 1.25 / 1_000_000

HEADER = "thirdPartyId,firstName,city,tier,score,lastPurchase"
FIRST = ["John", "Mary", "Zo%C3%A9", "Jos%C3%A9", "Anna", "Li", "Mar%C3%ADa", "Kevin", "Fatima", "Ole"]
CITY = ["Paris", "New%20York", "S%C3%A3o%20Paulo", "Berlin", "Tokyo", "Z%C3%BCrich", "Austin", ""]
TIER = ["gold", "silver", "bronze", "platinum", ""]


class DirObjects:
    """Objects as files under a folder; counts requests and bytes as S3 would bill them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gets = self.puts = self.get_bytes = self.put_bytes = 0

    def open(self, key: str):
        path = self.root / key
        if not path.exists():
            raise FileNotFoundError(key)
        self.gets += 1
        self.get_bytes += path.stat().st_size
        return path.open("rb")

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        self.puts += 1
        self.put_bytes += target.stat().st_size


class FilePointers:
    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, client_code: str, id_type: str):
        return Pointer.from_dict(json.loads(self.path.read_text())) if self.path.exists() else None

    def put(self, client_code: str, id_type: str, pointer, *, expect_version: int) -> bool:
        current = self.get(client_code, id_type)
        if (current.version if current else 0) != expect_version:
            return False
        self.path.write_text(json.dumps(pointer.to_dict()))
        return True


def generate(rows: int, changed_share: float) -> tuple[Path, Path, int]:
    """Day 1 and day 2 files; day 2 has `changed` rows with a new score, its columns reordered."""
    DATA.mkdir(parents=True, exist_ok=True)
    day1, day2 = DATA / f"day1-{rows}.csv", DATA / f"day2-{rows}.csv"
    rng = random.Random(rows)
    step = round(1 / changed_share)
    changed = 0
    if day1.exists() and day2.exists():
        return day1, day2, len(range(0, rows, step))
    with day1.open("w") as one, day2.open("w") as two:
        one.write(HEADER + "\n")
        two.write("thirdPartyId,score,lastPurchase,firstName,city,tier\n")
        for i in range(rows):
            first, city, tier = rng.choice(FIRST), rng.choice(CITY), rng.choice(TIER)
            score, last = str(rng.randrange(1000)), f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}"
            one.write(f"CRM-{i:08d},{first},{city},{tier},{score},{last}\n")
            if i % step == 0:
                score = str(int(score) + 1)
                changed += 1
            two.write(f"CRM-{i:08d},{score},{last},{first},{city},{tier}\n")
    return day1, day2, changed


def phase(name: str, rows: int, workdir: Path) -> dict:
    """Run one phase in this process (called as a subprocess by main)."""
    objects = DirObjects(workdir / "s3")
    pointers = FilePointers(workdir / "pointer.json")
    day = "day1" if name.startswith("day1") else "day2"
    job = workdir / day
    out: dict = {"phase": name}
    start, cpu = time.perf_counter(), time.process_time()
    if name.endswith("engine"):
        shutil.rmtree(job, ignore_errors=True)
        with (DATA / f"{day}-{rows}.csv").open("rb") as body:
            result = validate_and_split(body, job / "engine", Settings())
        (job / "batches.json").write_text(json.dumps([b.to_dict() for b in result.batches]))
        out["accepted"] = result.accepted
    elif name.endswith("diff"):
        batches = [BatchInfo(**b) for b in json.loads((job / "batches.json").read_text())]
        diff = diff_batches(
            [Path(b.path) for b in batches],
            pointer=pointers.get("acme", "thirdPartyId"),
            objects=objects,
            workdir=job / "delta",
            partitions=PARTITIONS,
        )
        out["diff_seconds"] = time.perf_counter() - start
        out["diff_cpu"] = time.process_time() - cpu
        sent = rebatch(
            batches,
            diff.changed_seqs,
            out_dir=job / "sent",
            max_rows=Settings().batch_max_rows,
            max_bytes=Settings().batch_max_bytes,
        )
        out.update(
            rows=diff.rows, unchanged=diff.unchanged, sent=sum(b.rows for b in sent), batches=len(sent)
        )
        keys = {}
        for partition, path in diff.candidates.items():
            keys[partition] = f"jobs/{day}/delta/candidates-{partition:04d}.gz"
            objects.upload_file(path, keys[partition], "application/gzip")
        (job / "diff.json").write_text(
            json.dumps(
                {
                    "unchanged": diff.unchanged_bits.hex(),
                    "rows": diff.rows,
                    "base": diff.base_version,
                    "partitions": diff.partitions,
                    "names": [n.decode() for n in diff.names],
                    "keys": keys,
                    "sent": [b.rows for b in sent],
                }
            )
        )
    elif name.endswith("update"):
        state = json.loads((job / "diff.json").read_text())
        unchanged = bytes.fromhex(state["unchanged"])
        confirmed = confirmed_bits(unchanged, state["rows"], [(n, []) for n in state["sent"]])
        result = update_snapshot(
            client_code="acme",
            id_type="thirdPartyId",
            job_id=day,
            base_version=state["base"],
            partitions=state["partitions"],
            names=[n.encode() for n in state["names"]],
            candidates={int(p): k for p, k in state["keys"].items()},
            confirmed=confirmed,
            objects=objects,
            pointers=pointers,
            workdir=job / "update",
        )
        out.update(result.to_dict())
        out["snapshot_bytes"] = sum(
            (workdir / "s3" / k).stat().st_size for k in pointers.get("acme", "thirdPartyId").keys.values()
        )
    out["seconds"] = time.perf_counter() - start
    out["cpu"] = time.process_time() - cpu
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.update(gets=objects.gets, puts=objects.puts, get_bytes=objects.get_bytes, put_bytes=objects.put_bytes)
    return out


def run_phase(name: str, rows: int, workdir: Path) -> dict:
    answer = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--rows", str(rows), "--workdir", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(answer.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.02)
    parser.add_argument("--phase")
    parser.add_argument("--workdir", type=Path, default=DATA / "work")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.rows, args.workdir)))
        return 0
    _, _, changed = generate(args.rows, args.changed)
    shutil.rmtree(args.workdir, ignore_errors=True)
    results = {}
    for name in ("day1-engine", "day1-diff", "day1-update", "day2-engine", "day2-diff", "day2-update"):
        results[name] = run_phase(name, args.rows, args.workdir)
    shutil.rmtree(args.workdir, ignore_errors=True)
    diff, update, engine = results["day2-diff"], results["day2-update"], results["day2-engine"]
    requests = diff["gets"] + update["gets"], diff["puts"] + update["puts"]
    # Lambda bills wall time; on a shared machine CPU time is the closer figure for a dedicated core.
    lambda_cost = (diff["cpu"] + update["cpu"]) * LAMBDA_MEMORY_GB * LAMBDA_GB_SECOND
    s3_cost = requests[0] / 1000 * S3_GET_PER_1000 + requests[1] / 1000 * S3_PUT_PER_1000
    dynamo_cost = 2 * DYNAMODB_READ + DYNAMODB_WRITE
    storage = update["snapshot_bytes"] / 1e9 * S3_GB_MONTH
    print(
        f"delta sync, {args.rows:,} rows, {changed:,} changed ({args.changed:.0%}), {PARTITIONS} partitions"
    )
    print(f"  day 1: sent {results['day1-diff']['sent']:,} rows (no snapshot yet)")
    print(
        f"  day 2: {diff['unchanged']:,} unchanged, sent {diff['sent']:,} rows in {diff['batches']} batch(es)"
    )
    print(f"  {'phase':<14} {'seconds':>8} {'CPU s':>7} {'peak MiB':>9}  S3 GET/PUT  bytes read/written")
    for name in ("day2-engine", "day2-diff", "day2-update"):
        r = results[name]
        print(
            f"  {name:<14} {r['seconds']:>8.2f} {r['cpu']:>7.2f} {r['peak_mib']:>9.1f}"
            f"  {r['gets']:>4}/{r['puts']:<4}"
            f"  {r['get_bytes'] / 1e6:>7.1f} MB / {r['put_bytes'] / 1e6:.1f} MB"
        )
    print(
        f"  diff alone (spill + join): {diff['diff_seconds']:.2f} s ({diff['diff_cpu']:.2f} s CPU); "
        f"engine alone {engine['seconds']:.2f} s ({engine['cpu']:.2f} s CPU); "
        f"snapshot {update['snapshot_bytes'] / 1e6:.1f} MB ({update['snapshot_bytes'] / args.rows:.0f} B/id)"
    )
    print(
        f"  cost of day 2's delta: Lambda ${lambda_cost:.6f} (diff + update at {LAMBDA_MEMORY_GB:g} GB), "
        f"S3 requests ${s3_cost:.6f}, DynamoDB ${dynamo_cost:.7f}; snapshot storage ${storage:.6f}/month"
    )
    failures = []
    if diff["sent"] != changed:
        failures.append(f"sent {diff['sent']:,} rows, expected the {changed:,} changed")
    if diff["peak_mib"] > MAX_PEAK_MIB:
        failures.append(f"diff peak {diff['peak_mib']:.0f} MiB over {MAX_PEAK_MIB:.0f}")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
