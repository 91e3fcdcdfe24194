"""`make sam-local`: build, run one function in SAM's Lambda container, and read what it answered.

The function is ReserveQuotaFunction on events/reserve_quota_batch.json with the daily quota
off (DAILY_ROW_QUOTA=0 on top of env.json): it then decides without DynamoDB, so the run needs no
AWS and no network, and its answer is known in advance. `sam local invoke` exits 0 even when the
handler raises, so the output is checked: no errorType, and exactly the expected answer.

Needs Docker and the base image public.ecr.aws/lambda/python:3.13-x86_64 (pulled, or built
offline: README "sam local invoke"). Without a Docker engine it says so and exits 0 without
pretending it ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "ReserveQuotaFunction"
EVENT = "events/reserve_quota_batch.json"
# env.json's settings for the run, and what makes this event need no AWS at all.
OVERRIDES = {FUNCTION: {"DAILY_ROW_QUOTA": "0"}}
EXPECTED = {"granted": True, "waitSeconds": 0, "used": 0, "limit": 0, "window": "off"}
ENV_FILE = ROOT / ".aws-sam" / "sam-local-env.json"
BASE_IMAGE = "public.ecr.aws/lambda/python:3.13-x86_64"


def env_vars() -> dict:
    """env.json with OVERRIDES laid over its function blocks."""
    settings = json.loads((ROOT / "env.json").read_text())
    for logical_id, values in OVERRIDES.items():
        settings[logical_id] = {**settings.get(logical_id, {}), **values}
    return settings


def docker_problem() -> str | None:
    """Why Docker can't run a container here, or None when it can."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        lines = [line.strip() for line in (info.stderr or info.stdout).splitlines() if line.strip()]
        return f"`docker info` failed: {lines[-1] if lines else 'no output'}"
    return None


def check_output(stdout: str, stderr: str) -> tuple[bool, str]:
    """(passed, why): sam's stdout ends with the function's answer; an error has an errorType."""
    if '"errorType"' in stdout or '"errorType"' in stderr:
        return False, "the handler raised (errorType in the output)"
    answers = [line for line in stdout.splitlines() if line.strip().startswith("{")]
    if not answers:
        return False, "no answer from the function on stdout (did the container start? see above)"
    try:
        answer = json.loads(answers[-1])
    except ValueError:
        return False, f"the answer is not JSON: {answers[-1][:200]}"
    if answer != EXPECTED:
        return False, f"unexpected answer {answer}, expected {EXPECTED}"
    return True, f"{FUNCTION} answered {json.dumps(answer)}"


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def main() -> int:
    problem = docker_problem()
    if problem:
        print(
            f"sam-local: NOT run ({problem})\n"
            "`sam local invoke` runs each function in a Docker container. On a machine with a Docker\n"
            f"engine (and the image {BASE_IMAGE}, pulled or built offline as the README's\n"
            "'sam local invoke' section shows), run `make sam-local` there. The events themselves are\n"
            "checked without Docker by tests/handlers/test_events.py (part of `make test`)."
        )
        return 0
    env = dict(os.environ)
    venv_bin = ROOT / ".venv" / "bin"
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"  # `sam build` needs python3.13
    env.setdefault("SAM_CLI_TELEMETRY", "0")
    build = run(["sam", "build"], env)
    if build.returncode != 0:
        print(build.stdout, build.stderr, sep="\n")
        print("sam-local: FAILED: sam build")
        return 1
    ENV_FILE.parent.mkdir(exist_ok=True)
    ENV_FILE.write_text(json.dumps(env_vars(), indent=2) + "\n")
    invoke = run(
        [
            "sam",
            "local",
            "invoke",
            FUNCTION,
            "--skip-pull-image",
            "-e",
            EVENT,
            "--env-vars",
            str(ENV_FILE.relative_to(ROOT)),
        ],
        env,
    )
    print(invoke.stderr, end="")
    print(invoke.stdout, end="")
    passed, why = check_output(invoke.stdout, invoke.stderr)
    if not passed and "Image not found" in invoke.stderr + invoke.stdout:
        why += f"; build or load {BASE_IMAGE} first (README: sam local invoke)"
    print(f"sam-local: {'OK' if passed else 'FAILED'}: {why} (sam exited {invoke.returncode})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
