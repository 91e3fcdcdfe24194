"""What a client profile's transcoding costs: the same rows as UTF-8 ',' / Windows-1252 ';' / UTF-16 tab.

    .venv/bin/python bench/bench_transcode.py                  # 1,000,000 rows
    .venv/bin/python bench/bench_transcode.py --rows 200000    # quick check

The rows are bench_validate.py's (bench/data/visitors-N.csv, URL-encoded, encoded mode), written
again with ';' in Windows-1252 and with tabs in UTF-16 (BOM). Each case runs in a fresh subprocess
that reports its time and peak RSS. MB/s is measured on the UTF-8 size of the rows, so the cases
compare on the same yardstick (a UTF-16 file is about twice as many bytes); the source's own rate
is printed too. Cases:

- engine: no profile (today's path), the baseline;
- utf-8 ',' passthrough: a profile that only renames a column (header rewritten, rows untouched);
- windows-1252 ';' and utf-16 tab: decoded and re-delimited; lines with nothing to quote (no quote,
  comma or bad byte) in one str.replace per block, the others through the csv module;
- windows-1252 ';' mapped: a column dropped and a constant added, so every row goes through the csv
  module (the cost of a real mapping).

Every case but the mapped one must accept the same rows; exits 1 when they do not, or when a
transcoding case's peak memory is over twice the engine's (memory stays flat: streaming, one
block of rows at a time).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "layers" / "common"))

from bench_validate import DATA, data_file  # noqa: E402

CASES = {
    "engine": None,
    "utf-8 ',' passthrough": {"rename": {"tier": "loyaltyTier"}},
    "windows-1252 ';'": {"separator": ";", "encoding": "windows-1252"},
    "utf-16 tab": {"separator": "tab", "encoding": "utf-16"},
    # Dropping a column and adding a constant: every row through the csv module.
    "windows-1252 ';' mapped": {
        "separator": ";",
        "encoding": "windows-1252",
        "drop": ["firstName"],
        "constants": {"source": "crm"},
    },
}
SOURCES = {
    "engine": "",
    "utf-8 ',' passthrough": "",
    "windows-1252 ';'": ".cp1252-semicolon",
    "utf-16 tab": ".utf16-tab",
    "windows-1252 ';' mapped": ".cp1252-semicolon",
}
MAX_PEAK_RATIO = 2.0


def source_file(rows: int, case: str) -> Path:
    base = data_file(rows)
    suffix = SOURCES[case]
    if not suffix:
        return base
    path = DATA / f"visitors-{rows}{suffix}.csv"
    if not path.exists():
        print(f"writing {path.name} ...", flush=True)
        separator, encoding = (";", "cp1252") if "cp1252" in suffix else ("\t", "utf-16")
        tmp = path.with_suffix(".tmp")
        with (
            base.open(encoding="utf-8", newline="") as src,
            tmp.open("w", encoding=encoding, newline="") as dst,
        ):
            writer = csv.writer(dst, delimiter=separator, lineterminator="\n")
            for row in csv.reader(src):
                writer.writerow(row)
        tmp.rename(path)
    return path


def child(case: str, path: Path) -> None:
    from profile_sync.client_profiles import parse_profile, validate_with_profile  # noqa: PLC0415
    from profile_sync.settings import Settings  # noqa: PLC0415

    document = CASES[case]
    profile = parse_profile(document, "bench") if document is not None else None
    out = Path(tempfile.mkdtemp(prefix="bench-transcode-"))
    try:
        start = time.perf_counter()
        with path.open("rb") as f:
            result = validate_with_profile(
                f, out, Settings(), profile, source_name=path.name, on_batch=lambda b: Path(b.path).unlink()
            )
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": peak_mib,
                "accepted": result.accepted,
                "rejected": result.rejected,
                "skipped": result.skipped,
            }
        )
    )


def measure(case: str, path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", case, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0
    utf8_mb = data_file(args.rows).stat().st_size / 1e6
    print(f"\n{args.rows:,} rows, {utf8_mb:.0f} MB as UTF-8")
    print(
        f"  {'case':<22} {'source MB':>9} {'seconds':>8} {'MB/s':>7} {'src MB/s':>8} {'peak MiB':>9}  counts"
    )
    found = {}
    for case in CASES:
        path = source_file(args.rows, case)
        found[case] = s = measure(case, path)
        source_mb = path.stat().st_size / 1e6
        counts = {k: s[k] for k in ("accepted", "rejected", "skipped")}
        print(
            f"  {case:<22} {source_mb:9.0f} {s['seconds']:8.2f} {utf8_mb / s['seconds']:7.1f} "
            f"{source_mb / s['seconds']:8.1f} {s['peak_mib']:9.1f}  {counts}",
            flush=True,
        )
    ok = True
    accepted = {s["accepted"] for case, s in found.items() if "mapped" not in case}
    if len(accepted) != 1:
        print(f"  FAIL: the cases accept different row counts: {accepted}")
        ok = False
    base = found["engine"]
    for case, s in found.items():
        ratio = s["peak_mib"] / base["peak_mib"]
        if ratio > MAX_PEAK_RATIO:
            print(f"  FAIL: {case} peak memory {ratio:.1f}x the engine's (limit {MAX_PEAK_RATIO}x)")
            ok = False
        print(f"  {case:<22} {s['seconds'] / base['seconds']:5.1f}x the engine's time")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
