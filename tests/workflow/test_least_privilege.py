"""Every AWS call the functions make in the pipeline is one their role, as SAM expands it, allows.

tests/template/test_iam.py holds each role to a table of the calls its code makes (nothing wider);
this holds the table to the code (nothing narrower): the real handlers run the scenarios that reach
each call (a quota wait, a refusal, a failed step, auth, single updates, a rejected file), and
every call botocore sends is checked against the function's own role, with the conditions IAM
would evaluate (kms:ViaService for the encrypted topic, s3:prefix for a listing). The calls moto's
state machine makes on its own threads (invoking the functions, the Distributed Map's ItemReader)
are the workflow role's.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from fnmatch import fnmatchcase

import boto3
import botocore.handlers
import pytest
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

from profile_sync.workflow import report
from profile_sync_local.stack import functions
from profile_sync_local.stack.aws_server import REGION
from profile_sync_local.stack.workflow import run_workflow
from tests.conftest import FakeContext, event_path
from tests.template import sam
from tests.template.test_iam import INGEST_TARGET, KEY, TOPIC
from tests.workflow.conftest import pools_run_in_the_submitters_context

SECRET_NAME = "target-profile-sync/profile-token"
ARN = f"{sam.REGION}:{sam.ACCOUNT}"
_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)
WORKFLOW = "workflow"
# S3 operation -> the IAM action that allows it.
S3_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListObjectsV2": "s3:ListBucket",
}


def _roles() -> dict[str, str]:
    """Function folder (or the workflow) -> its role's logical id."""
    found = {WORKFLOW: "ProfileSyncStateMachineRole"}
    for logical_id, resource in sam.sam_template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            found[resource["Properties"]["CodeUri"].strip("/").removeprefix("functions/")] = (
                f"{logical_id}Role"
            )
    return found


class Calls:
    """botocore's calls, each with the function that made it (None: the test itself)."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.seen: list[tuple[str | None, str, str, dict]] = []

    def __call__(self, params: dict, model, event_name: str, **_) -> None:
        function = _function.get()
        if function is None and threading.current_thread() is not threading.main_thread():
            function = WORKFLOW  # moto's state machine, on its own threads
        self.seen.append((function, event_name.split(".")[1], model.name, dict(params)))

    def requests(self, service: str, operation: str, params: dict) -> list[tuple[str, str, dict]]:
        """The IAM (action, resource, condition context) a call needs."""
        stack = self.stack
        names = {
            stack.bucket: "<DropBucket>",
            stack.jobs_table: "<JobsTable>",
            stack.idempotency_table: "<IdempotencyTable>",
        }
        if service == "s3":
            bucket = f"arn:aws:s3:::{names[params['Bucket']]}"
            if operation == "ListObjectsV2":
                return [("s3:ListBucket", bucket, {"s3:prefix": params.get("Prefix", "")})]
            if operation == "DeleteObjects":  # authorized per key, as s3:DeleteObject
                return [("s3:DeleteObject", f"{bucket}/{o['Key']}", {}) for o in params["Delete"]["Objects"]]
            return [(S3_ACTIONS[operation], f"{bucket}/{params['Key']}", {})]
        if service == "dynamodb" and operation == "PutItem":
            # IAM's dynamodb:LeadingKeys is the item's partition key (the delta pointer's grant).
            pk = params["Item"].get("pk")
            context = {"dynamodb:LeadingKeys": pk["S"] if isinstance(pk, dict) else pk} if pk else {}
            return [
                ("dynamodb:PutItem", f"arn:aws:dynamodb:{ARN}:table/{names[params['TableName']]}", context)
            ]
        if service == "dynamodb":
            tables = params["RequestItems"] if operation == "BatchWriteItem" else [params["TableName"]]
            return [(f"dynamodb:{operation}", f"arn:aws:dynamodb:{ARN}:table/{names[t]}", {}) for t in tables]
        if service == "sns" and operation == "Publish":
            assert params["TopicArn"] == stack.topic_arn
            via = {"kms:ViaService": f"sns.{REGION}.amazonaws.com"}
            return [("sns:Publish", TOPIC, {}), ("kms:GenerateDataKey", KEY, via), ("kms:Decrypt", KEY, via)]
        if service == "sfn" and operation == "StartExecution":
            assert params["stateMachineArn"] == stack.state_machine_arn
            return [("states:StartExecution", INGEST_TARGET, {})]
        if service == "lambda" and operation == "Invoke":
            name = params["FunctionName"].rsplit(":", 1)[1]  # the ASL's substitution, the task's name
            return [("lambda:InvokeFunction", f"arn:aws:lambda:{ARN}:function:<{name}Function>", {})]
        if service == "secrets-manager" and operation == "GetSecretValue":
            # A secret's ARN ends in its name, "-" and six characters of Secrets Manager's choosing.
            arn = f"arn:aws:secretsmanager:{ARN}:secret:{params['SecretId']}-Xy12Ab"
            return [("secretsmanager:GetSecretValue", arn, {})]
        if service == "ssm" and operation == "GetParameter":
            # A hierarchical parameter's ARN is "parameter" followed by its name (which starts with /).
            return [("ssm:GetParameter", f"arn:aws:ssm:{ARN}:parameter{params['Name']}", {})]
        raise AssertionError(f"no IAM mapping for {service}.{operation}: add it here")


def _condition_holds(condition: tuple, context: dict) -> bool:
    for operator, key, expected in condition:
        value = context.get(key)
        options = expected if isinstance(expected, tuple) else (expected,)
        if value is None:
            return False
        if operator == "StringEquals" and value not in options:
            return False
        like = operator in ("StringLike", "ForAllValues:StringLike")
        if like and not any(fnmatchcase(value, o) for o in options):
            return False
    return True


def allowed(grants: set, action: str, resource: str, context: dict) -> bool:
    return any(
        a == action and fnmatchcase(resource, r) and _condition_holds(c, context) for a, r, c in grants
    )


@contextlib.contextmanager
def running(folder: str) -> Iterator[None]:
    token = _function.set(folder)
    try:
        yield
    finally:
        _function.reset(token)


@pytest.fixture
def calls(pipeline, monkeypatch):
    recorder = Calls(pipeline.stack)
    # Every botocore session made from now on records its calls: boto3's default one (reset here)
    # and those Powertools makes for itself (Parameters' secret provider, dropped here).
    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build", recorder)],
    )
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    # The state machine's own Lambda calls go through botocore too (sfn_local answers them in the
    # Task's thread at before-send), so they are recorded as the workflow role's like the others.
    DEFAULT_PROVIDERS.clear()
    pools_run_in_the_submitters_context(monkeypatch)
    # Each function's handler runs as that function (the ingest from a drop, the workflow's tasks).
    load = functions.load_function

    def load_attributed(folder: str):
        module = load(folder)
        handler = module.lambda_handler

        def invoke(event: dict, context: object) -> dict:
            with running(folder):
                return handler(event, context)

        module.lambda_handler = invoke
        return module

    monkeypatch.setattr(functions, "load_function", load_attributed)
    yield recorder
    DEFAULT_PROVIDERS.clear()


def _check(calls: Calls, **parameters: str) -> set[tuple[str, str, str]]:
    """Every call of a function is allowed by its role; returns the (function, service, operation) seen."""
    roles = sam.roles({"TokenSecretId": SECRET_NAME, **parameters})
    role_of = _roles()
    refused, made = [], set()
    for function, service, operation, params in calls.seen:
        if function is None:
            continue  # the test setting up or reading back
        made.add((function, service, operation))
        grants = roles[role_of[function]]["grants"]
        for action, resource, context in calls.requests(service, operation, params):
            if not allowed(grants, action, resource, context):
                refused.append(f"{function}: {action} on {resource} {context or ''}")
    assert not refused, "calls the role does not allow:\n" + "\n".join(sorted(set(refused)))
    return made


def _visitors(count: int) -> bytes:
    return ("thirdPartyId,tier\n" + "".join(f"CRM-{i:06d},gold\n" for i in range(1, count + 1))).encode()


def test_bulk_jobs_with_auth_a_quota_wait_refused_and_failing_batches(pipeline, calls, monkeypatch):
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps({"profile_token": "token-1"}))
    pipeline.emulator.configure(require_auth=True, valid_tokens={"token-1"}, polls_until_complete=1)
    pipeline.setting(token_secret_id=SECRET_NAME, batch_max_rows=4, daily_row_quota=10)
    # Two jobs over the day's quota: a batch waits for the next day (the notice); rejects; failed ids.
    pipeline.emulator.configure(fail_ids={"CRM-000002"})
    first = pipeline.run(_visitors(8) + b",empty id\n")
    second = pipeline.run(_visitors(8))
    assert {first.job["status"], second.job["status"]} <= {"COMPLETE", "COMPLETE_WITH_ERRORS"}
    # Target answers 500 to every submit: the batch's rows fail (FailBatch).
    pipeline.emulator.configure(error_500_share=1.0)
    failing = pipeline.run(_visitors(3))
    assert failing.job["status"] == "COMPLETE_WITH_ERRORS"
    made = _check(calls)
    assert {
        ("ingest", "s3", "GetObject"),
        ("ingest", "sfn", "StartExecution"),
        ("reserve_quota", "sns", "Publish"),
        ("poll_batch", "s3", "PutObject"),
        ("fail_batch", "s3", "PutObject"),
        ("finalize", "s3", "ListObjectsV2"),
        ("finalize", "sns", "Publish"),
        (WORKFLOW, "s3", "GetObject"),  # the Distributed Map's ItemReader: batches.json
        (WORKFLOW, "lambda", "Invoke"),
        # (the Tasks' lambda:invoke runs in the Task's thread, not through a client: sfn_local's
        # client_patch; the role's InvokeFunction grants are checked in tests/template/test_iam.py)
    } <= made, sorted(made)
    # One process shares the Target client (and its token) between functions: whichever came first.
    assert {f for f, service, _ in made if service == "secrets-manager"} & {"submit_batch", "poll_batch"}


def test_a_rejected_file_a_failed_step_and_an_aborted_execution(pipeline, calls, monkeypatch):
    rejected = pipeline.ingest(b"ECID,tier\nabc,gold\n")
    assert rejected["status"] == "REJECTED"

    def broken(ports, job_id, failure=None):
        raise RuntimeError("disk on fire")

    finalize_job = report.finalize_job
    monkeypatch.setattr(report, "finalize_job", broken)
    job = pipeline.ingest(_visitors(3))
    execution = run_workflow(pipeline.execution_input(job), clock=pipeline.clock)
    assert execution.status == "FAILED"
    monkeypatch.setattr(report, "finalize_job", finalize_job)
    # An execution stopped by hand: EventBridge tells the execution alert function.
    other = pipeline.ingest(_visitors(2))
    event = json.loads(event_path("execution_alert_execution_aborted.json").read_text())
    event["detail"]["name"] = other["jobId"]
    assert functions.load_function("execution_alert").lambda_handler(event, FakeContext())["notified"]
    made = _check(calls)
    assert {
        ("ingest", "sns", "Publish"),
        ("job_failed", "dynamodb", "Query"),
        ("job_failed", "sns", "Publish"),
        ("execution_alert", "dynamodb", "UpdateItem"),
        ("execution_alert", "sns", "Publish"),
        # the aborted job's report, as JobFailed writes it: AccessDenied here would leave it without one
        ("execution_alert", "s3", "ListObjectsV2"),
        ("execution_alert", "s3", "PutObject"),
    } <= made, sorted(made)
    aborted = pipeline.job(other["jobId"])
    assert aborted["status"] == "FAILED" and aborted.get("reportKey"), aborted


def test_single_updates_waiting_for_their_rolling_quota(pipeline, calls):
    pipeline.setting(batch_max_rows=4, single_update_quota=6, max_concurrency=1)
    job = pipeline.ingest(_visitors(8), folders="api=single/")
    execution = run_workflow(pipeline.execution_input(job), clock=pipeline.clock)
    assert execution.status == "SUCCEEDED", execution.describe()
    made = _check(calls)
    assert {
        ("single_update", "dynamodb", "PutItem"),
        ("single_update", "s3", "PutObject"),
        ("single_update", "sns", "Publish"),
    } <= made, sorted(made)


def test_the_check_refuses_a_call_the_role_does_not_grant(pipeline, calls) -> None:
    """It can fail: JobFailed writing a batch file, which its role does not allow."""
    with running("job_failed"):
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=pipeline.stack.bucket, Key="jobs/x/batches/batch-00001.txt", Body=b"batch="
        )
    with pytest.raises(
        AssertionError, match=r"job_failed: s3:PutObject on arn:aws:s3:::<DropBucket>/jobs/x/"
    ):
        _check(calls)


def test_client_profiles_and_their_own_token_secrets(pipeline, calls):
    """Profiles read from /<stack>/clients/, each client's token from its folder of secrets."""
    prefix = "profile-sync/clients/"
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name=f"{prefix}brand-a", SecretString=json.dumps({"profile_token": "token-a"}))
    pipeline.emulator.configure(require_auth=True, client_tokens=(("brand-a", "token-a"),))
    pipeline.setting(client_profiles_max_age_seconds=0)
    pipeline.stack.put_profile(
        "brand-a", {"token_secret_id": f"{prefix}brand-a", "daily_row_quota": 10, "separator": ";"}
    )
    run = pipeline.run(_visitors(3).replace(b",", b";"), client="brand-a")
    assert run.job["status"] == "COMPLETE", run.job.get("reason")
    made = _check(calls, ClientTokenSecretPrefix=prefix)
    assert {
        ("ingest", "ssm", "GetParameter"),
        ("reserve_quota", "ssm", "GetParameter"),
        ("submit_batch", "ssm", "GetParameter"),
    } <= made, sorted(made)
    assert {f for f, service, _ in made if service == "secrets-manager"} & {"submit_batch", "poll_batch"}


def test_the_automatic_re_drive_of_a_delta_job_and_the_snapshot_cleanup(pipeline, calls):
    """Finalize drops the re-drive file under incoming/<client>/redrive=<jobId>/ and deletes the
    snapshot files replaced more than DELTA_CLEANUP_GRACE_SECONDS ago: both within its role."""
    pipeline.setting(batch_max_rows=5, redrive_pending_auto=1, delta_cleanup_grace_seconds=0)
    pipeline.run(_visitors(10), folders="delta=on/")  # 2 batches, snapshot version 1
    pipeline.emulator.configure(vanish_batches=3)  # the 3rd batch Target takes: job 2's first
    changed = _visitors(10).replace(b",gold", b",silver")
    second = pipeline.run(changed, folders="delta=on/").job
    assert second["pending"] == 5 and second["autoRedrive"]["rows"] == 5
    at = datetime.fromtimestamp(pipeline.clock.now(), UTC)
    child = pipeline.stack.deliver(second["autoRedriveKey"], at=at, sequencer="00000000000000000A")
    run_workflow(pipeline.execution_input(child), clock=pipeline.clock)
    child = pipeline.job(child["jobId"])
    assert child["status"] == "COMPLETE" and child["deltaUpdate"]["deleted"] >= 1
    made = _check(calls)
    assert {("finalize", "s3", "PutObject"), ("finalize", "s3", "DeleteObjects")} <= made, sorted(made)


def test_the_landing_check_reads_back_and_notifies(pipeline, calls):
    """LandingCheck: the job's files and records, the sample, the report, the notice."""
    pipeline.setting(batch_max_rows=4, landing_check_sample_rows=8)
    pipeline.emulator.configure(lose_share=0.5)
    lossy = pipeline.run(_visitors(8))  # half lost: a notice
    assert lossy.job["landingCheck"]["status"] == "DONE" and lossy.job["landingCheck"]["notVisible"] > 0
    made = _check(calls)
    assert {
        ("landing_check", "dynamodb", "GetItem"),
        ("landing_check", "dynamodb", "Query"),
        ("landing_check", "dynamodb", "UpdateItem"),
        ("landing_check", "s3", "ListObjectsV2"),
        ("landing_check", "s3", "GetObject"),
        ("landing_check", "s3", "PutObject"),
        ("landing_check", "sns", "Publish"),
    } <= made, sorted(made)
    keys = {p["Key"] for f, _, op, p in calls.seen if f == "landing_check" and op == "PutObject"}
    assert keys == {f"jobs/{lossy.job['jobId']}/landing/sample.json", lossy.job["reportKey"]}
