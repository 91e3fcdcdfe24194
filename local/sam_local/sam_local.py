"""`make sam-local`: every function, in SAM's Lambda container, against the local stack over HTTP.

For each file in events/, in a fresh account on a moto server: seed what the event needs (the drop,
and earlier steps, run by the real handlers in this process: the same code as `profile-sync run`),
run `sam local invoke <Function> -e <event>` in a container, then check the answer and the records
the function wrote. sam exits 0 even when the handler raises, so its output is read, never its
exit code alone.

Where a container can reach what runs here:
- moto listens on the Docker bridge address (172.17.0.1, SAM_LOCAL_HOST to change it), and the
  functions reach it through AWS_ENDPOINT_URL (a template Parameter, empty in an account).
- The Target emulator stays on loopback; a TLS relay on the bridge address forwards to it. The
  functions send the token only over HTTPS to a non-loopback host, so the relay serves HTTPS with
  a throwaway CA that is added to the CA bundle of a separate build (.aws-sam/sam-local), never
  to the build `sam deploy` uses. `--docker-network host` is no way out: SAM CLI skips "host", and
  the container's own 127.0.0.1:8080 is sam's runtime port (answers 404 to Target calls).

Event times: the events carry fixed times (the handler tests run them on a fixed clock); here the
poll state is the one the submit step just returned, so its deadline is relative to the run.

Needs Docker and public.ecr.aws/lambda/python:3.13-x86_64 (pulled, or built offline: README).
Without a Docker engine it says it did not run, and why, and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync_local.emulator import EmulatorConfig, TargetEmulator
from profile_sync_local.sfn_local import LocalLambdaContext, function_arn
from profile_sync_local.stack import (
    REGION,
    ROOT,
    AwsServer,
    LocalResources,
    event_sources,
    load_function,
    local_aws,
    template,
)

BRIDGE_HOST = os.environ.get("SAM_LOCAL_HOST", "172.17.0.1")
BUILD_DIR = ROOT / ".aws-sam" / "sam-local"
BASE_IMAGE = "public.ecr.aws/lambda/python:3.13-x86_64"
EVENTS = ROOT / "events"
SOURCES = event_sources()  # what was dropped under each ingest event's key
BULK = "ingest_object_created.json"
SINGLE = "ingest_object_created_single_api.json"


# ------------------------------------------------------------------------------------- functions
def functions() -> dict[str, str]:
    """Function folder -> logical id, for every AWS::Serverless::Function in template.yaml."""
    found = {}
    for logical_id, resource in template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            found[resource["Properties"]["CodeUri"].strip("/").removeprefix("functions/")] = logical_id
    return found


def function_for(event_name: str) -> str:
    """events/<folder>_<what>.json -> folder (the longest folder that prefixes the name)."""
    matches = [folder for folder in functions() if event_name.startswith(f"{folder}_")]
    if not matches:
        raise ValueError(f"events/{event_name} belongs to no function")
    return max(matches, key=len)


def declared_variables(logical_id: str) -> set[str]:
    """The environment variables the template gives a function (Globals and its own)."""
    resources = template()["Resources"]
    own = resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return set(template()["Globals"]["Function"]["Environment"]["Variables"]) | set(own)


def env_file(overrides: dict[str, str]) -> dict:
    """sam's --env-vars document: env.json with ``overrides`` for every function that declares them.

    sam drops, without a word, what the template does not declare for a function: so only
    declared variables are written (a test holds AWS_ENDPOINT_URL among them).
    """
    settings = json.loads((ROOT / "env.json").read_text())
    document: dict = {"Parameters": settings.get("Parameters", {})}
    for logical_id in functions().values():
        declared = declared_variables(logical_id)
        values = {**settings.get(logical_id, {}), **overrides}
        document[logical_id] = {name: value for name, value in values.items() if name in declared}
    return document


def function_env(document: dict, logical_id: str) -> dict[str, str]:
    """What a function's container gets from the env file (sam's merge: Parameters, then its block)."""
    declared = declared_variables(logical_id)
    values = {**document.get("Parameters", {}), **document.get(logical_id, {})}
    return {name: value for name, value in values.items() if name in declared}


# ------------------------------------------------------------------------------------- answers
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


# ------------------------------------------------------------------------------------- TLS relay
def throwaway_tls(host: str, directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``host`` (an IP address), valid for a day: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("profile-sync sam-local CA"))
        .issuer_name(name("profile-sync sam-local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@contextlib.contextmanager
def tls_relay(host: str, target: tuple[str, int], cert: Path, key: Path) -> Iterator[str]:
    """HTTPS on ``host`` (a free port), relayed byte for byte to ``target`` (the emulator on loopback)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server((host, 0))
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def serve(raw: socket.socket) -> None:
        try:
            client = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with client, socket.create_connection(target) as upstream:
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"https://{host}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


# ------------------------------------------------------------------------------------- the world
Invoker = Callable[[str, dict], Answer]


@dataclass
class World:
    """One account on the moto server, the emulator behind its relay, and what was run so far."""

    server: AwsServer
    emulator: TargetEmulator
    target_url: str
    env: dict  # the env file's document
    ca_file: Path
    stack: LocalResources = field(default_factory=LocalResources)
    done: dict[str, Any] = field(default_factory=dict)

    def fresh(self) -> None:
        self.server.reset()
        self.stack = LocalResources().create()
        self.done = {}

    @property
    def jobs(self) -> DynamoJobStore:
        return DynamoJobStore(self.stack.jobs_table)

    def run_here(self, folder: str, event: dict) -> Any:
        """A step the event under test needs first, by the real handler in this process."""
        logical_id = functions()[folder]
        saved = dict(os.environ)
        os.environ.update(function_env(self.env, logical_id))
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.ca_file)  # this process trusts the relay too
        try:
            context = LocalLambdaContext(
                function_name=logical_id, invoked_function_arn=function_arn(logical_id)
            )
            return load_function(folder).lambda_handler(event, context)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def drop(self, name: str) -> dict:
        """The source of an ingest event in the bucket (what the event describes)."""
        event = load_event(name)
        key = unquote_plus(event["detail"]["object"]["key"])
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=event["detail"]["bucket"]["name"], Key=key, Body=SOURCES[name]
        )
        return event

    def ingested(self, name: str) -> dict:
        if name not in self.done:
            self.done[name] = self.run_here("ingest", self.drop(name))
        return self.done[name]

    def submitted(self) -> dict:
        if "submit" not in self.done:
            self.ingested(BULK)
            self.done["submit"] = self.run_here("submit_batch", load_event("submit_batch_quota_granted.json"))
        return self.done["submit"]

    def poll_event(self) -> dict:
        """The poll event carrying the state the submit step just returned (times of this run)."""
        event = load_event("poll_batch_first_poll.json")
        event["poll"] = self.submitted()
        return event


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


# ------------------------------------------------------------------------------------- per event
# name -> (prepare: world -> the event to send, check: (world, event, answer) -> problems).
Check = Callable[[World, dict, object], list[str]]


def _expect(answer: object, **wanted: object) -> list[str]:
    if not isinstance(answer, dict):
        return [f"answer is not an object: {answer!r}"[:200]]
    return [f"{k}={answer.get(k)!r}, expected {v!r}" for k, v in wanted.items() if answer.get(k) != v]


def _job(world: World, answer: object) -> Mapping[str, Any]:
    found = world.jobs.get_job(answer["jobId"]) if isinstance(answer, dict) and "jobId" in answer else None
    return found or {}


def check_ingest(accepted: int, api: str) -> Check:
    def check(world: World, event: dict, answer: object) -> list[str]:
        problems = _expect(answer, status="QUEUED")
        job = _job(world, answer)
        if (job.get("accepted"), job.get("apiVersion")) != (accepted, api):
            problems.append(f"job record: accepted {job.get('accepted')} api {job.get('apiVersion')}")
        return problems

    return check


def _batch(world: World, event: dict) -> Mapping[str, Any]:
    return world.jobs.get_batch(event["jobId"], event["batch"]["batchIndex"]) or {}


def check_reserve(world: World, event: dict, answer: object) -> list[str]:
    return _expect(answer, granted=True, used=10, waitSeconds=0)


def check_submit(world: World, event: dict, answer: object) -> list[str]:
    problems = _expect(answer, done=False, polls=0)
    if isinstance(answer, dict) and not str(answer.get("statusUrl", "")).startswith(world.target_url):
        problems.append(f"statusUrl {answer.get('statusUrl')!r} is not the emulator's")
    if _batch(world, event).get("status") != "SUBMITTED":
        problems.append(f"batch record status {_batch(world, event).get('status')!r}, expected SUBMITTED")
    return problems


def check_ended(end: str, status: str, succeeded: int) -> Check:
    def check(world: World, event: dict, answer: object) -> list[str]:
        problems = _expect(answer, done=True, end=end)
        record = _batch(world, event)
        counts = record.get("counts") or {}
        if record.get("status") != status or counts.get("succeeded") != succeeded:
            problems.append(f"batch record {record.get('status')!r} counts {counts}")
        return problems

    return check


def check_single(world: World, event: dict, answer: object) -> list[str]:
    return _expect(answer, cursor=10, done=True) + (
        [] if _batch(world, event).get("status") == "COMPLETE" else ["batch record is not COMPLETE"]
    )


def check_final(status: str) -> Check:
    def check(world: World, event: dict, answer: object) -> list[str]:
        problems = _expect(answer, status=status)
        job = world.jobs.get_job(event["jobId"]) or {}
        if job.get("status") != status:
            problems.append(f"job record status {job.get('status')!r}, expected {status}")
        return problems

    return check


def check_alert(world: World, event: dict, answer: object) -> list[str]:
    problems = _expect(answer, notified=True)
    job = world.jobs.get_job(event["detail"]["name"]) or {}
    if job.get("status") != "FAILED":
        problems.append(f"job record status {job.get('status')!r}, expected FAILED")
    return problems


def _poll_done(world: World) -> dict:
    world.run_here("poll_batch", world.poll_event())
    return load_event("finalize_job.json")


STEPS: dict[str, tuple[Callable[[World], dict], Check]] = {
    "ingest_object_created.json": (lambda w: w.drop(BULK), check_ingest(10, "v2")),
    "ingest_object_created_gzip_odd_key.json": (
        lambda w: w.drop("ingest_object_created_gzip_odd_key.json"),
        check_ingest(2, "v1"),
    ),
    "ingest_object_created_single_api.json": (lambda w: w.drop(SINGLE), check_ingest(10, "single")),
    "reserve_quota_batch.json": (
        lambda w: w.ingested(BULK) and load_event("reserve_quota_batch.json"),
        check_reserve,
    ),
    "submit_batch_quota_granted.json": (
        lambda w: w.ingested(BULK) and load_event("submit_batch_quota_granted.json"),
        check_submit,
    ),
    "poll_batch_first_poll.json": (lambda w: w.poll_event(), check_ended("complete", "COMPLETE", 10)),
    "fail_batch_submit_gave_up.json": (
        lambda w: w.ingested(BULK) and load_event("fail_batch_submit_gave_up.json"),
        check_ended("submit_failed", "SUBMIT_FAILED", 0),
    ),
    "single_update_first_chunk.json": (
        lambda w: w.ingested(SINGLE) and load_event("single_update_first_chunk.json"),
        check_single,
    ),
    "finalize_job.json": (_poll_done, check_final("COMPLETE_WITH_ERRORS")),
    "job_failed_accounting_error.json": (
        lambda w: w.ingested(BULK) and load_event("job_failed_accounting_error.json"),
        check_final("FAILED"),
    ),
    "execution_alert_execution_aborted.json": (
        lambda w: w.ingested(BULK) and load_event("execution_alert_execution_aborted.json"),
        check_alert,
    ),
}


@dataclass
class Result:
    function: str
    event: str
    answer: str
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def run_events(
    world: World, invoke: Invoker, names: list[str], show: Callable[[Result], None] = lambda r: None
) -> list[Result]:
    """Each event in a fresh account; one that can't be prepared or checked fails alone."""
    results = []
    for name in names:
        logical_id = functions()[function_for(name)]
        answer = Answer()
        try:
            world.fresh()
            prepare, check = STEPS[name]
            event = prepare(world)
            answer = invoke(logical_id, event)
            problems = [answer.error] if answer.error else check(world, event, answer.value)
        except Exception as exc:  # reported with the others, not a crash of the whole run
            problems = [f"sam-local itself failed: {type(exc).__name__}: {exc}"]
        results.append(Result(logical_id, name, json.dumps(answer.value)[:160], problems))
        show(results[-1])
    return results


@contextlib.contextmanager
def local_world(host: str) -> Iterator[World]:
    """moto and the emulator's relay on ``host``, the stack created, the env file's document made."""
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sam-local-")))
        server = stack.enter_context(AwsServer(host=host))
        stack.enter_context(local_aws(server))
        emulator = stack.enter_context(TargetEmulator(EmulatorConfig(seed=7)))
        ca, cert, key = throwaway_tls(host, directory)
        emulator_host, emulator_port = emulator.url.removeprefix("http://").rsplit(":", 1)
        target_url = stack.enter_context(tls_relay(host, (emulator_host, int(emulator_port)), cert, key))
        emulator.configure(status_url_base=target_url)
        created = LocalResources().create()
        document = env_file(
            {
                "AWS_ENDPOINT_URL": server.url,
                "TARGET_BASE_URL": target_url,
                "STATE_MACHINE_ARN": created.state_machine_arn,
                "ALERT_TOPIC_ARN": created.topic_arn,
            }
        )
        yield World(server, emulator, target_url, document, ca, created)


# ------------------------------------------------------------------------------------- sam
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


def sam_invoker(world: World, directory: Path) -> Invoker:
    env_path = directory / "env.json"
    env_path.write_text(json.dumps(world.env, indent=2))
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


def line(result: Result) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    return "\n".join(
        [f"{verdict}  {result.function:<24} {result.event:<42} {result.answer}"]
        + [f"      - {problem}" for problem in result.problems]
    )


def report(results: list[Result]) -> str:
    lines = [line(result) for result in results]
    passed = sum(r.passed for r in results)
    lines.append(f"sam-local: {passed} of {len(results)} passed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
            world, sam_invoker(world, Path(scratch)), names, show=lambda r: print(line(r), flush=True)
        )
    print("\n" + report(results))
    print(f"sam-local: {len(results)} invocations in {time.monotonic() - started:.0f} s")
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
