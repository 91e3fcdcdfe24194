"""`python -m sam_local` (`make sam-local`): build, then every event through its function in Docker."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import sam_local
from sam_local.sam import BASE_IMAGE, BUILD_DIR, docker_problem, run, sam_env, sam_invoker, trust_in_build
from sam_local.world import EVENTS, line, local_world, report, run_events

BRIDGE_HOST = os.environ.get("SAM_LOCAL_HOST", "172.17.0.1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(sam_local.__doc__ or "").splitlines()[0])
    parser.add_argument("events", nargs="*", help="event file names (default: every file in events/)")
    args = parser.parse_args(argv)
    names = args.events or sorted(path.name for path in EVENTS.glob("*.json"))
    problem = docker_problem()
    if problem:
        print(
            f"sam-local: NOT run ({problem})\n"
            "`sam local invoke` runs each function in a Docker container. On a machine with a Docker\n"
            f"engine (and the image {BASE_IMAGE}, pulled or built offline as the README's\n"
            "'sam local invoke' section shows), run `make sam-local` there. The events themselves\n"
            "and this script's steps and checks run without Docker in tests/handlers/test_events.py and\n"
            "tests/handlers/test_sam_local.py (part of `make test`)."
        )
        return 0
    build = run(["sam", "build", "--build-dir", str(BUILD_DIR)], sam_env())
    if build.returncode != 0:
        print(build.stdout, build.stderr, sep="\n")
        print("sam-local: FAILED: sam build")
        return 1
    started = time.monotonic()
    with local_world(BRIDGE_HOST) as world, tempfile.TemporaryDirectory(prefix="sam-local-") as scratch:
        trust_in_build(world.ca_file)
        results = run_events(
            world, sam_invoker(world.env, Path(scratch)), names, show=lambda r: print(line(r), flush=True)
        )
    print("\n" + report(results))
    print(f"sam-local: {len(results)} invocations in {time.monotonic() - started:.0f} s")
    return 0 if results and all(r.passed for r in results) else 1
