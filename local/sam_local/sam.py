"""`sam build` and `sam local invoke` in Docker, and the function's answer read from sam's output
(sam exits 0 even when the handler raises)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from profile_sync_local.stack.aws_server import REGION
from profile_sync_local.stack.project import ROOT

BUILD_DIR = ROOT / ".aws-sam" / "sam-local"
BASE_IMAGE = "public.ecr.aws/lambda/python:3.13-x86_64"


@dataclass
class Answer:
    value: object = None
    error: str = ""  # why there is no usable answer


def parse_output(stdout: str, stderr: str) -> Answer:
    """The function's answer from sam's output: its last JSON line on stdout; an errorType is an error."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip().startswith("{")]
    if not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return Answer(error=f"no answer on stdout (container did not run?): {tail[:200]}")
    try:
        value = json.loads(lines[-1])
    except ValueError:
        return Answer(error=f"answer is not JSON: {lines[-1][:200]}")
    if isinstance(value, dict) and "errorType" in value:
        return Answer(
            value, f"the handler raised {value['errorType']}: {value.get('errorMessage', '')[:200]}"
        )
    return Answer(value)


Invoker = Callable[[str, dict], Answer]


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


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def sam_env() -> dict[str, str]:
    """sam's own environment: fake credentials (sam hands them to the container), no profile."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_ENDPOINT_URL")}
    env.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - moto's fake credentials
        AWS_SESSION_TOKEN="local",  # noqa: S106
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        SAM_CLI_TELEMETRY="0",
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",  # sam build: python3.13
    )
    return env


def trust_in_build(ca_file: Path) -> None:
    """The layer's CA bundle (certifi, used by requests) of the sam-local build trusts the relay."""
    bundles = list(BUILD_DIR.glob("CommonLayer/python/certifi/cacert.pem"))
    if not bundles:
        raise RuntimeError(f"no certifi bundle under {BUILD_DIR}/CommonLayer: the layer's layout changed?")
    for bundle in bundles:
        bundle.write_text(bundle.read_text() + "\n" + ca_file.read_text())


def sam_invoker(env_document: dict, directory: Path) -> Invoker:
    """Each function in its container, with ``env_document`` as sam's --env-vars."""
    env_path = directory / "env.json"
    env_path.write_text(json.dumps(env_document, indent=2))
    env = sam_env()

    def invoke(logical_id: str, event: dict) -> Answer:
        event_path = directory / "event.json"
        event_path.write_text(json.dumps(event))
        done = run(
            [
                "sam", "local", "invoke", logical_id,
                "--template", str(BUILD_DIR / "template.yaml"),
                "--skip-pull-image",
                "-e", str(event_path),
                "--env-vars", str(env_path),
            ],
            env,
        )  # fmt: skip
        answer = parse_output(done.stdout, done.stderr)
        if answer.error and "Image not found" in done.stderr + done.stdout:
            answer.error += f"; build or load {BASE_IMAGE} first (README: sam local invoke)"
        return answer

    return invoke
