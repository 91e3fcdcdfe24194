"""The stack as deployed, on one machine: template resources in moto, the real handlers, the real ASL.

Used by the workflow and handler tests, by `profile-sync run` and by `make sam-local`. moto runs in
server mode (:class:`AwsServer`) and every AWS client reaches it over HTTP through AWS_ENDPOINT_URL,
as boto3 reaches AWS in an account: botocore's real response path (urllib3 streaming bodies,
paginators, retries) is the one that runs. The resources are built from template.yaml (key schemas,
indexes), the state machine from statemachine/*.asl.json with the template's DefinitionSubstitutions,
and each Lambda task is routed to functions/<name>/app.py in-process.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from types import ModuleType
from urllib.parse import quote_plus

import boto3
import yaml
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.utilities import parameters
from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from profile_sync import clock as step_clock
from profile_sync.settings import Settings
from profile_sync_local.sfn_local import (
    ExecutionResult,
    LocalLambdaContext,
    LocalStateMachine,
    VirtualClock,
    function_arn,
    substitute,
)

ROOT = Path(__file__).resolve().parents[2]
STATE_MACHINE = ROOT / "statemachine" / "profile_sync.asl.json"
REGION = "us-east-1"

# State machine task name (as in DefinitionSubstitutions) -> function folder.
WORKFLOW_FUNCTIONS = {
    "ReserveQuota": "reserve_quota",
    "SubmitBatch": "submit_batch",
    "PollBatch": "poll_batch",
    "FailBatch": "fail_batch",
    "SingleUpdate": "single_update",
    "Finalize": "finalize",
    "JobFailed": "job_failed",
    "LandingCheck": "landing_check",
}


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as {tag: value}."""


def _tag(loader: yaml.Loader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    assert isinstance(node, yaml.MappingNode), node  # YAML has no other kind of node
    return {suffix: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _tag)


@cache
def template(name: str = "template.yaml") -> dict:
    """template.yaml, or a template it nests (observability.yaml), as parsed YAML."""
    return yaml.load((ROOT / name).read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader


def table_definition(logical_id: str, table_name: str) -> dict:
    """create_table arguments for a DynamoDB table as the template declares it."""
    props = template()["Resources"][logical_id]["Properties"]
    kwargs = {key: props[key] for key in ("BillingMode", "AttributeDefinitions", "KeySchema")}
    if "GlobalSecondaryIndexes" in props:
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return {"TableName": table_name, **kwargs}


class AwsServer:
    """moto in server mode, in this process: the AWS APIs over HTTP on ``host`` (a free port).

    In this process on purpose: the server's threads use the same moto backends (one per
    account/region) as the rest of the process, so sfn_local's patches on moto's Lambda and Step
    Functions and :func:`atomic_dynamodb_writes` apply to what it serves. Loopback by default; only
    `make sam-local` binds the Docker bridge, so a container can reach it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""
        self.port = 0

    def __enter__(self) -> AwsServer:
        # werkzeug logs a line per request otherwise.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, self.port = self._server.get_host_and_port()
        self.url = f"http://{host}:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def env(self) -> dict[str, str]:
        """What points boto3 here (and the credentials moto accepts, so nothing can reach AWS)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            # moto's Step Functions interpreter calls Lambda at localhost:MOTO_PORT (sfn_local).
            "MOTO_PORT": str(self.port),
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def reset(self) -> None:
        """Forget every resource (moto's reset endpoint): a fresh account, cheaper than a new server."""
        # Our own server's http:// URL.
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            answer.read()


@contextlib.contextmanager
def local_aws(server: AwsServer | None = None) -> Iterator[AwsServer]:
    """A fresh account on a moto server (``server`` or a new one on loopback), with its environment
    set for this process, and DynamoDB writes atomic as in AWS."""
    saved = {name: os.environ.get(name) for name in AwsServer().env()}
    with contextlib.ExitStack() as stack:
        if server is None:
            server = stack.enter_context(AwsServer())
        server.reset()  # moto's backends are the process's, whichever server serves them
        stack.enter_context(atomic_dynamodb_writes())
        os.environ.update(server.env())
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@contextlib.contextmanager
def atomic_dynamodb_writes() -> Iterator[None]:
    """Give moto's DynamoDB the per-item atomicity of the real one.

    Real DynamoDB applies a conditional write atomically; moto checks the condition and writes in
    plain Python, so two threads can both pass `used <= :room` (quota) or `calls < :limit` (rate
    limit). The quota and the limiter rely on DynamoDB's guarantee, and the local pipeline runs
    its steps as threads, so writes are serialised here.
    """
    lock = threading.RLock()
    originals = {name: getattr(DynamoDBBackend, name) for name in ("update_item", "put_item", "delete_item")}

    def serialised(original):
        def write(*args, **kwargs):
            with lock:
                return original(*args, **kwargs)

        return write

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, serialised(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


@dataclass
class LocalResources:
    bucket: str = "profile-sync-drop"
    jobs_table: str = "profile-sync-jobs"
    idempotency_table: str = "profile-sync-idempotency"
    topic_arn: str = ""
    state_machine_arn: str = ""
    # SSM path of the client profiles (profile_sync.client_profiles); none stored = stack defaults.
    profiles_path: str = "/profile-sync/clients"

    def create(self) -> LocalResources:
        """Create the resources in the account boto3 reaches (the local moto server)."""
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=self.bucket)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition("JobsTable", self.jobs_table))
        dynamodb.create_table(**table_definition("IdempotencyTable", self.idempotency_table))
        self.topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name="profile-sync-alerts")[
            "TopicArn"
        ]
        # The ingest starts executions of this one; the workflow itself runs through run_workflow.
        self.state_machine_arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="profile-sync-ingest-target",
            definition=json.dumps({"StartAt": "Queued", "States": {"Queued": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/profile-sync",
        )["stateMachineArn"]
        return self

    def drop(self, key: str, body: bytes, *, at: datetime, sequencer: str | None = None) -> dict:
        """Put a file in the drop bucket and hand its S3 event to the real ingest handler."""
        boto3.client("s3", region_name=REGION).put_object(Bucket=self.bucket, Key=key, Body=body)
        event = drop_event(self.bucket, key, len(body), at=at, sequencer=sequencer)
        context = LocalLambdaContext(
            function_name="profile-sync-ingest", invoked_function_arn=function_arn("profile-sync-ingest")
        )
        return load_function("ingest").lambda_handler(event, context)

    def env(self) -> dict[str, str]:
        return {
            "DROP_BUCKET": self.bucket,
            "JOBS_TABLE": self.jobs_table,
            "IDEMPOTENCY_TABLE": self.idempotency_table,
            "STATE_MACHINE_ARN": self.state_machine_arn,
            "ALERT_TOPIC_ARN": self.topic_arn,
            "CLIENT_PROFILES_PATH": self.profiles_path,
        }

    def put_profile(self, client_code: str, document: dict | str) -> int:
        """Store a client profile as `profile-sync clients set` does; returns its SSM version."""
        text = document if isinstance(document, str) else json.dumps(document)
        answer = boto3.client("ssm", region_name=REGION).put_parameter(
            Name=f"{self.profiles_path}/{client_code}", Value=text, Type="String", Overwrite=True
        )
        return answer["Version"]


# What was dropped under each ingest event's key in events/ (the events say only where and how big):
# the handler tests and `make sam-local` put these bytes there before running an event.
ODD_KEY_CSV = "pcId,city,note\n1001,München,VIP client\n1002,Köln,\n".encode()


def event_sources() -> dict[str, bytes]:
    sample = (ROOT / "local" / "samples" / "visitors.csv").read_bytes()
    return {
        "ingest_object_created.json": sample,
        "ingest_object_created_gzip_odd_key.json": gzip.compress(ODD_KEY_CSV, mtime=0),
        "ingest_object_created_single_api.json": sample,
    }


def drop_event(bucket: str, key: str, size: int, *, at: datetime, sequencer: str | None = None) -> dict:
    """The EventBridge "Object Created" event S3 sends for a drop (events/ingest_object_created.json
    with this object); the key URL-encoded as S3 encodes it in events."""
    event = json.loads((ROOT / "events" / "ingest_object_created.json").read_text())
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"].update(key=quote_plus(key, safe="/"), size=size)
    if sequencer is not None:
        event["detail"]["object"]["sequencer"] = sequencer
    return event


def load_function(folder: str) -> ModuleType:
    """Import functions/<folder>/app.py afresh, as a cold start would (fresh Powertools logger too)."""
    service_logger = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "service_undefined"))
    service_logger.handlers.clear()
    for attribute in ("init", "powertools_handler"):
        if hasattr(service_logger, attribute):
            delattr(service_logger, attribute)
    # Each warm container builds its ports once; a fresh import is a fresh container. So are
    # Powertools' parameter providers: their AWS clients would still call an earlier run's server.
    from profile_sync.aws import ports  # noqa: PLC0415 - after the environment is set

    ports.clear()
    parameters.clear_caches()
    module_name = f"handler_{folder}"
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / folder / "app.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"functions/{folder}/app.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    _own_logger(module, folder)
    _own_metrics(module)
    return module


def _own_logger(module: ModuleType, folder: str) -> None:
    """Give the function's Powertools Logger a stdlib logger of its own, as in Lambda.

    In one process every function's Logger would share the service's stdlib logger, and each
    import replaces its handler: the steps would log through the last module's formatter and lose
    their own keys (Lambda context, correlation id). Two invocations of one function at once still
    share a module here, which Lambda never does.
    """
    powertools_logger = getattr(module, "logger", None)
    if powertools_logger is None:
        return
    own = logging.getLogger(f"profile-sync-local.{folder}")
    own.handlers = [powertools_logger.logger_handler]
    own.propagate = False
    own.setLevel(logging.getLogger(powertools_logger.service).level or logging.INFO)
    powertools_logger._logger = own


def function_timeouts() -> dict[str, float]:
    """Each workflow function's Timeout from template.yaml (the Globals' when it sets none)."""
    resources = template()["Resources"]
    default = template()["Globals"]["Function"].get("Timeout", 3)
    return {
        name: float(resources[f"{name}Function"]["Properties"].get("Timeout", default))
        for name in WORKFLOW_FUNCTIONS
    }


class _PerThreadMetrics(AmazonCloudWatchEMFProvider):
    """A Powertools metrics provider whose metric set belongs to the thread that adds to it.

    Powertools shares one metric set across the process, which in Lambda serves one invocation
    at a time. Here invocations run as threads of one process: one would flush (or fail to flush:
    "Must contain at least one metric") the metrics another is still adding.
    """

    def _state(self) -> threading.local:
        local = self.__dict__.setdefault("_per_thread", threading.local())
        if not hasattr(local, "metric_set"):
            local.metric_set, local.dimension_sets, local.metadata_set = {}, [], {}
            local.dimension_set = dict(self.default_dimensions)
        return local


def _thread_attribute(name: str) -> property:
    return property(
        lambda self: getattr(self._state(), name), lambda self, value: setattr(self._state(), name, value)
    )


for _name in ("metric_set", "dimension_set", "dimension_sets", "metadata_set"):
    setattr(_PerThreadMetrics, _name, _thread_attribute(_name))


def _own_metrics(module: ModuleType) -> None:
    metrics = getattr(module, "metrics", None)
    provider = getattr(metrics, "provider", None)
    if type(provider) is AmazonCloudWatchEMFProvider:
        provider.__class__ = _PerThreadMetrics


def workflow_handlers() -> dict:
    return {name: _with_package_logs(load_function(folder)) for name, folder in WORKFLOW_FUNCTIONS.items()}


def _with_package_logs(module: ModuleType):
    """The domain package's log lines go through the running function's handler, as in its own process.

    Functions that call Target hand the "profile_sync" logger their handler at import; in one
    process the last import would win for every function.
    """
    handler = module.lambda_handler
    if not getattr(getattr(module, "function", None), "calls_target", False):
        return handler
    package = logging.getLogger("profile_sync")

    def invoke(event: dict, context: object) -> dict:
        package.handlers = [module.logger.logger_handler]
        return handler(event, context)

    return invoke


@contextlib.contextmanager
def steps_on(clock: VirtualClock) -> Iterator[None]:
    """The steps' time (quota days, deadlines, rate windows, back-off) follows the virtual clock."""
    saved = step_clock.time, step_clock.sleep
    step_clock.time, step_clock.sleep = clock.time, clock.sleep
    try:
        yield
    finally:
        step_clock.time, step_clock.sleep = saved


def definition_substitutions() -> dict[str, str]:
    """The state machine's DefinitionSubstitutions (template.yaml) as the local runner resolves them:
    a function's ARN as the in-process Lambda router names it; a Parameter (MaxConcurrency) from the
    Settings field of the same name, so the environment sets it here as it sets the functions'."""
    settings = Settings.from_env()
    machine = template()["Resources"]["ProfileSyncStateMachine"]["Properties"]
    resolved = {}
    for name, value in machine["DefinitionSubstitutions"].items():
        if "GetAtt" in value:
            resolved[name] = function_arn(value["GetAtt"].split(".")[0].removesuffix("Function"))
        else:
            field = re.sub(r"(?<!^)(?=[A-Z])", "_", value["Ref"]).lower()
            resolved[name] = str(getattr(settings, field))
    return resolved


def state_machine_definition() -> str:
    """The ASL as Step Functions receives it: the template's DefinitionSubstitutions applied."""
    return substitute(STATE_MACHINE.read_text(), definition_substitutions())


def run_workflow(
    execution_input: dict,
    *,
    clock: VirtualClock | None,
    handlers: dict | None = None,
    timeout: float = 300.0,
    poll_interval: float = 0.005,
) -> ExecutionResult:
    """Execute the real ASL for one job (the ingest's execution input) with the real handlers.

    clock None: real time (Wait states, retries and the steps' own waits really wait).
    """
    machine = LocalStateMachine(
        STATE_MACHINE,
        handlers if handlers is not None else workflow_handlers(),
        substitutions=definition_substitutions(),
        clock=clock,
        name="profile-sync-workflow",
        timeout=timeout,
        timeouts=function_timeouts(),
        poll_interval=poll_interval,
    )
    with steps_on(clock) if clock is not None else contextlib.nullcontext():
        return machine.run(execution_input, execution_name=execution_input["jobId"])
