"""`make smoke STACK=name CLIENT=code`: the bundled sample through a deployed stack, as a person would.

`profile-sync submit` uploads local/samples/visitors.csv (under a name of its own), `jobs` finds
the job it made, `status` waits for it to end, `report` downloads its report, and the row account
is checked: 16 rows received, 5 rejected, 1 skipped, and the 10 sent all accounted for. The sample's
10 visitors (CRM-1000xx) go to Target for CLIENT: use a test client.

Opt-in, never part of `make test`. Without AWS credentials it says so and exits 0: they are looked
up by botocore's resolver (environment, profile, SSO cache, config), which calls no AWS API; the
instance-metadata lookup is off unless AWS_EC2_METADATA_DISABLED=false is set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import botocore.session

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "local" / "samples" / "visitors.csv"
FINAL = {"COMPLETE", "COMPLETE_WITH_ERRORS", "FAILED", "REJECTED"}
# The sample's account (tests/handlers/test_events.py holds the same figures).
EXPECTED = {"received": 16, "rejected": 5, "skipped": 1}
SENT = 10


def credentials_problem() -> str | None:
    """Why there are no AWS credentials here, or None. Resolves them locally, calls no AWS API."""
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    try:
        credentials = botocore.session.get_session().get_credentials()
    except Exception as exc:  # a broken profile or an expired SSO cache
        return f"AWS credentials could not be resolved ({type(exc).__name__}: {exc})"
    if credentials is None:
        return "no AWS credentials (environment, AWS_PROFILE, ~/.aws, SSO)"
    return None


def check_account(summary: dict) -> list[str]:
    """What is wrong with the report's row account, for the bundled sample."""
    account = summary.get("account", {})
    problems = [
        f"{name} {account.get(name)}, expected {value}"
        for name, value in EXPECTED.items()
        if account.get(name) != value
    ]
    sent = sum(account.get(name, 0) for name in ("succeeded", "failed", "not_found", "pending"))
    if sent != SENT:
        problems.append(f"succeeded+failed+not_found+pending = {sent}, expected {SENT}")
    if summary.get("status") != "COMPLETE_WITH_ERRORS":
        problems.append(
            f"status {summary.get('status')}, expected COMPLETE_WITH_ERRORS (the sample has bad rows)"
        )
    return problems


def cli(*args: str) -> subprocess.CompletedProcess:
    command = [shutil.which("profile-sync") or "profile-sync", *args]
    print("+ profile-sync", " ".join(args), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"smoke: FAILED: `profile-sync {args[0]}` exited {done.returncode}: {done.stderr.strip()}"
        )
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="the deployed stack's name")
    parser.add_argument("--client", required=True, help="Target client code the sample is sent to")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION or your AWS config)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the job (1800)")
    parser.add_argument("--interval", type=float, default=15, help="seconds between status checks (15)")
    args = parser.parse_args(argv)
    problem = credentials_problem()
    if problem:
        print(
            f"smoke: SKIPPED: {problem}. Nothing was sent. "
            f"Log in to the account of stack {args.stack!r} first."
        )
        return 0
    aws = ["--stack", args.stack, *(["--region", args.region] if args.region else [])]
    name = f"smoke-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.csv"
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / name
        shutil.copyfile(SAMPLE, source)
        cli("submit", str(source), "--client", args.client, *aws)
    deadline = time.monotonic() + args.timeout
    job_id, status = None, None
    while time.monotonic() < deadline:
        if job_id is None:
            jobs = json.loads(cli("jobs", "--json", "--limit", "50", *aws).stdout)
            job_id = next((j["jobId"] for j in jobs if (j.get("sourceKey") or "").endswith(f"/{name}")), None)
        if job_id is not None:
            status = json.loads(cli("status", job_id, "--json", *aws).stdout)["job"]["status"]
            if status in FINAL:
                break
        time.sleep(args.interval)
    else:
        print(
            f"smoke: FAILED: {'no job for ' + name if job_id is None else f'job {job_id} still {status}'} "
            f"after {args.timeout:.0f} s (profile-sync jobs / status show where it is)"
        )
        return 1
    out = ROOT / "out" / "smoke" / job_id
    cli("report", job_id, "--out", str(out), *aws)
    summary = json.loads((out / "summary.json").read_text())
    problems = check_account(summary)
    for line in problems:
        print(f"  - {line}")
    verdict = "FAILED" if problems else "OK"
    print(f"smoke: {verdict}: job {job_id} ended {status}; report in {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
