"""Benchmark the validate-and-split engine against a plain csv-module version and pandas.

    .venv/bin/python bench/bench_validate.py              # 1,000,000 and 5,000,000 rows
    .venv/bin/python bench/bench_validate.py --rows 100000 200000   # quick check

Input files are generated once into bench/data/ (git-ignored) and reused. Each contender runs in a
fresh subprocess that reports its own time and peak RSS, so peaks do not mix. Exits 1 when the
engine is under 5x the plain csv version's speed or 2x the engine as it was before (issue 13), its
peak memory grows more than 20% from the smallest to the largest file or passes 64 MiB, or when gzip
input takes over 1.5x the time. Above 1M rows only the engine runs (plain and gzip input): the memory
check needs it alone.

"before" is the engine of commit BEFORE_COMMIT (profile_sync/validate.py as issue 13 found it), read
with `git show`, so today's engine and that one run side by side on the same machine. Times are wall
clock; the CPU seconds beside them are steadier when the machine is shared. The contenders the goals
compare (engine, engine-gz, before, plain) run BENCH_REPEAT times (3), interleaved, and the best time
of each is compared, as timeit does: on a shared machine a single run mostly measures the neighbours.
The peak memory shown is the largest of the runs.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote_to_bytes

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
CONTENDERS = ("engine", "engine-gz", "before", "plain", "csv", "pandas")
BEFORE_COMMIT = "b56cb84"  # the engine as issue 13 found it (one module, profile_sync/validate.py)
MIN_SPEEDUP_BEFORE = 2.0
LARGE = 1_000_000  # above this many rows only the engine runs (its memory must stay flat)
MAX_GZ_RATIO = 1.5
MIN_SPEEDUP = 5.0
MAX_PEAK_GROWTH = 1.2
MAX_PEAK_MIB = 64.0
COMPARED = ("engine", "engine-gz", "before", "plain")  # run REPEAT times, the best time kept

HEADER = "pcId,firstName,city,tier,score,lastPurchase\n"
FIRST = ["John", "Mary", "Zo%C3%A9", "Jos%C3%A9", "Anna", "Li", "Mar%C3%ADa", "Kevin", "Fatima", "Ole"]
CITY = ["Paris", "New%20York", "S%C3%A3o%20Paulo", "Berlin", "Tokyo", "Z%C3%BCrich", "Austin", ""]
TIER = ["gold", "silver", "bronze", "platinum", ""]
BAD = [
    "{id},John Smith,Paris,gold,1,2024-01-01",  # raw space
    "{id},50%,Paris,gold,1,2024-01-01",  # bad percent
    ",Mary,Berlin,silver,2,2024-02-02",  # empty id
    "{id},a,b,c,d,e,f,g",  # too many fields
    "{id},,,,,",  # nothing to send: skipped
    '{id},"Smith, John",Paris,gold,3,2024-03-03',  # quoted comma: accepted
]


# ---- data -------------------------------------------------------------------------------------


def generate(path: Path, rows: int) -> None:
    rng = random.Random(rows)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="ascii", newline="") as f:
        f.write(HEADER)
        block = 100_000
        for start in range(0, rows, block):
            lines = []
            for i in range(start, min(rows, start + block)):
                ident = 10_000_000 + (rng.randrange(i) if i and rng.random() < 0.01 else i)
                if rng.random() < 0.0005:
                    lines.append(rng.choice(BAD).format(id=ident))
                    continue
                lines.append(
                    f"{ident},{rng.choice(FIRST)},{rng.choice(CITY)},{rng.choice(TIER)},"
                    f"{rng.randrange(1000)},2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
                )
            f.write("\n".join(lines) + "\n")
    tmp.rename(path)


def data_file(rows: int) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"visitors-{rows}.csv"
    if not path.exists():
        print(f"generating {path.name} ...", flush=True)
        generate(path, rows)
    return path


# ---- contenders (each runs in its own process) ------------------------------------------------


def gz_file(path: Path) -> Path:
    gz = path.with_suffix(".csv.gz")
    if not gz.exists():
        print(f"compressing {path.name} ...", flush=True)
        tmp = gz.with_suffix(".tmp")
        with path.open("rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.rename(gz)
    return gz


def run_engine_gz(path: Path, out: Path) -> dict:
    return run_engine(gz_file(path), out)


def run_engine(path: Path, out: Path) -> dict:
    sys.path.insert(0, str(ROOT / "layers" / "common"))
    from profile_sync.settings import Settings  # noqa: PLC0415 (imported in the child only)
    from profile_sync.validate import validate_and_split  # noqa: PLC0415

    opener = gzip.open if path.name.endswith(".gz") else Path.open
    with opener(path, "rb") as f:
        result = validate_and_split(
            f, out, Settings(), source_name=path.name, on_batch=lambda b: Path(b.path).unlink()
        )
    return {
        "accepted": result.accepted,
        "rejected": result.rejected,
        "skipped": result.skipped,
        "duplicates": result.duplicate_ids,
    }


def run_before(path: Path, out: Path) -> dict:
    """The engine of BEFORE_COMMIT, loaded from git as its own module."""
    import importlib.util  # noqa: PLC0415 (imported in the child only)

    sys.path.insert(0, str(ROOT / "layers" / "common"))
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE_COMMIT}:layers/common/profile_sync/validate.py"],
        capture_output=True,
        check=True,
    ).stdout
    module_path = out / "validate_before.py"
    module_path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("validate_before", module_path)
    assert spec is not None and spec.loader is not None
    before = importlib.util.module_from_spec(spec)
    sys.modules["validate_before"] = before  # dataclasses look their module up
    spec.loader.exec_module(before)
    from profile_sync.settings import Settings  # noqa: PLC0415

    with path.open("rb") as f:
        result = before.validate_and_split(
            f, out, Settings(), source_name=path.name, on_batch=lambda b: Path(b.path).unlink()
        )
    return {
        "accepted": result.accepted,
        "rejected": result.rejected,
        "skipped": result.skipped,
        "duplicates": result.duplicate_ids,
    }


_BAD = re.compile(r'%(?![0-9A-Fa-f]{2})|[^\x21-\x7e]|"')


def run_csv(path: Path, out: Path, max_rows: int = 500_000, max_bytes: int = 50_000_000) -> dict:
    """The straightforward version: csv.reader, per-field checks, csv.writer, a set of ids."""
    accepted = rejected = skipped = duplicates = 0
    seen: set[str] = set()
    batch_index, batch, writer, batch_rows, batch_bytes = 0, None, None, 0, 0
    with (
        path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f,
        (out / "rejects.csv").open("w", newline="") as rej,
    ):
        rejects = csv.writer(rej)
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        head_line = "batch=" + ",".join(header) + "\n"
        for fields in reader:
            if not fields:
                continue
            row = [v.strip() for v in fields]
            reason = None
            if len(row) > len(header):
                reason = "too_many_fields"
            elif not row[0]:
                reason = "empty_id"
            else:
                size = 0
                for i, given in enumerate(row):
                    v = given.replace(",", "%2C").replace('"', "%22") if i else given
                    row[i] = v
                    if _BAD.search(v):
                        reason = "invalid_encoding"
                        break
                    try:
                        decoded = unquote_to_bytes(v).decode()
                    except UnicodeDecodeError:
                        reason = "invalid_encoding"
                        break
                    if i == 0 and len(decoded) > 256:
                        reason = "id_too_long"
                        break
                    size += len(decoded) if i else 0
                else:
                    if size > 65536:
                        reason = "row_too_large"
            if reason:
                rejected += 1
                rejects.writerow([reader.line_num, reason, ",".join(row)])
                continue
            if not any(row[1:]):
                skipped += 1
                continue
            if row[0] in seen:
                duplicates += 1
            seen.add(row[0])
            line = ",".join(row) + "\n"
            if batch is None or batch_rows >= max_rows or batch_bytes + len(line) >= max_bytes:
                if batch is not None:
                    batch.close()
                batch_index += 1
                batch = (out / f"batch-{batch_index:05d}.txt").open("w", newline="")
                batch.write(head_line)
                writer = csv.writer(batch, lineterminator="\n")
                batch_rows, batch_bytes = 0, len(head_line)
            writer.writerow(row)
            batch_rows += 1
            batch_bytes += len(line)
            accepted += 1
    if batch is not None:
        batch.close()
    return {"accepted": accepted, "rejected": rejected, "skipped": skipped, "duplicates": duplicates}


_PLAIN_BAD = re.compile(r"%(?![0-9A-Fa-f]{2})| ")


def run_plain(path: Path, out: Path, max_rows: int = 500_000) -> dict:
    """The plain version of issue 13: csv.reader; each value checked for a '%' not followed by two
    hex digits, a space, and UTF-8; csv.writer into batches. No duplicate counting."""
    accepted = rejected = 0
    batch_index, batch, writer, batch_rows = 0, None, None, 0
    with (
        path.open(encoding="utf-8", errors="surrogateescape", newline="") as f,
        (out / "rejects.csv").open("w", newline="") as rej,
    ):
        rejects = csv.writer(rej)
        reader = csv.reader(f)
        header = next(reader)
        for row in reader:
            for value in row:
                if _PLAIN_BAD.search(value):
                    break
                try:
                    value.encode()
                except UnicodeEncodeError:
                    break
            else:
                if batch is None or batch_rows >= max_rows:
                    if batch is not None:
                        batch.close()
                    batch_index += 1
                    batch = (out / f"batch-{batch_index:05d}.txt").open("w", newline="")
                    writer = csv.writer(batch, lineterminator="\n")
                    writer.writerow(["batch=" + header[0], *header[1:]])
                    batch_rows = 0
                writer.writerow(row)
                batch_rows += 1
                accepted += 1
                continue
            rejected += 1
            rejects.writerow([reader.line_num, "invalid", *row])
    if batch is not None:
        batch.close()
    return {"accepted": accepted, "rejected": rejected}


def run_pandas(path: Path, out: Path, max_rows: int = 500_000) -> dict:
    """pandas chunked read + to_csv into batches (only the id check)."""
    import pandas as pd  # noqa: PLC0415 (imported in the child only)

    chunk_rows = 100_000
    accepted = 0
    batch_index, batch_rows, batch = 0, 0, None
    reader = pd.read_csv(
        path, chunksize=chunk_rows, dtype=str, keep_default_na=False, on_bad_lines="skip", engine="c"
    )
    for frame in reader:
        chunk = frame[frame["pcId"] != ""]
        if batch is None or batch_rows + len(chunk) > max_rows:
            if batch is not None:
                batch.close()
            batch_index += 1
            batch = (out / f"batch-{batch_index:05d}.txt").open("w", newline="")
            batch.write("batch=" + ",".join(chunk.columns) + "\n")
            batch_rows = 0
        chunk.to_csv(batch, header=False, index=False, lineterminator="\n")
        batch_rows += len(chunk)
        accepted += len(chunk)
    if batch is not None:
        batch.close()
    return {"accepted": accepted}


def child(contender: str, path: Path) -> None:
    out = Path(tempfile.mkdtemp(prefix=f"bench-{contender}-"))
    try:
        start, cpu = time.perf_counter(), time.process_time()
        run = {
            "engine": run_engine,
            "engine-gz": run_engine_gz,
            "before": run_before,
            "plain": run_plain,
            "csv": run_csv,
            "pandas": run_pandas,
        }[contender]
        if contender == "engine-gz":
            gz_file(path)  # compressed once, outside the timing
            start, cpu = time.perf_counter(), time.process_time()
        counts = run(path, out)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": peak_kib / 1024, **counts}))


# ---- driver -----------------------------------------------------------------------------------


def measure(contender: str, path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", contender, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    stats["mb_s"] = path.stat().st_size / 1e6 / stats["seconds"]
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_rows = [int(n) for n in os.environ.get("BENCH_ROWS", "1000000 5000000").split()]
    parser.add_argument("--rows", type=int, nargs="+", default=default_rows)
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")))
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0

    ok = True
    peaks: dict[int, float] = {}
    for rows in sorted(args.rows):
        path = data_file(rows)
        size_mb = path.stat().st_size / 1e6
        one, five, _ = os.getloadavg()
        print(
            f"\n{rows:,} rows, {size_mb:.0f} MB ({os.cpu_count()} cores, load average {one:.2f} {five:.2f})"
        )
        print(
            f"  {'contender':<9} {'seconds':>8} {'cpu s':>7} {'MB/s':>8} {'peak MiB':>9}  counts"
            f"  (best of {args.repeat} for {', '.join(COMPARED)})"
        )
        stats: dict[str, dict] = {}
        contenders = CONTENDERS if rows <= LARGE else ("engine", "engine-gz")
        for round_ in range(args.repeat):
            for contender in contenders:
                if round_ and contender not in COMPARED:
                    continue
                s = measure(contender, path)
                best = stats.get(contender)
                if best is not None:
                    s["peak_mib"] = max(s["peak_mib"], best["peak_mib"])
                    if best["seconds"] <= s["seconds"]:
                        best["peak_mib"] = s["peak_mib"]
                        best["cpu"] = min(best["cpu"], s["cpu"])
                        continue
                    s["cpu"] = min(best["cpu"], s["cpu"])
                stats[contender] = s
        for contender in contenders:
            s = stats[contender]
            counts = {k: v for k, v in s.items() if k not in ("seconds", "cpu", "peak_mib", "mb_s")}
            print(
                f"  {contender:<9} {s['seconds']:8.2f} {s['cpu']:7.2f} {s['mb_s']:8.1f} {s['peak_mib']:9.1f}"
                f"  {counts}",
                flush=True,
            )
        engine, engine_cpu = stats["engine"]["seconds"], stats["engine"]["cpu"]
        gz = stats["engine-gz"]["seconds"] / engine
        print(
            f"  engine on gzip / uncompressed: {gz:.2f}x the time (need <= {MAX_GZ_RATIO}), "
            f"{stats['engine-gz']['cpu'] / engine_cpu:.2f}x the CPU"
        )
        ok &= gz <= MAX_GZ_RATIO
        if "plain" in stats:
            plain = stats["plain"]["seconds"] / engine
            before = stats["before"]["seconds"] / engine
            fuller = stats["csv"]["seconds"] / engine
            print(
                f"  engine speed: {plain:.1f}x the plain csv version (need >= {MIN_SPEEDUP}x), "
                f"{before:.2f}x the engine before (need >= {MIN_SPEEDUP_BEFORE}x), "
                f"{fuller:.1f}x the fuller one"
            )
            print(
                f"  by CPU seconds: {stats['plain']['cpu'] / engine_cpu:.1f}x the plain csv version, "
                f"{stats['before']['cpu'] / engine_cpu:.2f}x the engine before"
            )
            ok &= plain >= MIN_SPEEDUP and before >= MIN_SPEEDUP_BEFORE
            if stats["engine"]["accepted"] != stats["csv"]["accepted"]:
                print("  WARNING: engine and csv versions accept different row counts")
        peaks[rows] = stats["engine"]["peak_mib"]
        ok &= peaks[rows] < MAX_PEAK_MIB
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        growth = peaks[large] / peaks[small]
        print(
            f"\nengine peak {large:,} rows / {small:,} rows: {growth:.2f} "
            f"(need <= {MAX_PEAK_GROWTH}, each under {MAX_PEAK_MIB:.0f} MiB)"
        )
        ok &= growth <= MAX_PEAK_GROWTH
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
