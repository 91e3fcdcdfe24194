"""Least privilege: each role, as SAM's translator expands it, grants exactly what its code calls.

CALLS below is written from the code (functions/*/app.py, profile_sync/workflow/, profile_sync/aws/*.py):
one (action, resource, condition) per call a function makes. A role that grants anything more (a
wider resource, one more action, a lost condition) or anything less fails.
"""

from __future__ import annotations

import re

import pytest

from tests.template import sam

ARN = f"{sam.REGION}:{sam.ACCOUNT}"
BUCKET = "arn:aws:s3:::<DropBucket>"
JOBS_TABLE = f"arn:aws:dynamodb:{ARN}:table/<JobsTable>"
IDEMPOTENCY_TABLE = f"arn:aws:dynamodb:{ARN}:table/<IdempotencyTable>"
TOPIC = f"arn:aws:sns:{ARN}:<AlertTopic.TopicName>"
KEY = f"arn:aws:kms:{ARN}:key/<AlertKey.KeyId>"
FAILED_EVENTS = f"arn:aws:sqs:{ARN}:<IngestFailedEventsQueue.QueueName>"
INGEST_TARGET = f"arn:aws:states:{ARN}:stateMachine:<ProfileSyncStateMachine.Name>"
SECRET_NAME = "profile-sync/target"
SECRET = f"arn:aws:secretsmanager:{sam.REGION}:{sam.ACCOUNT}:secret:{SECRET_NAME}-??????"
WORKFLOW = f"arn:aws:states:{sam.REGION}:{sam.ACCOUNT}:stateMachine:{sam.STACK}-workflow"
WORKFLOW_EXECUTIONS = f"arn:aws:states:{sam.REGION}:{sam.ACCOUNT}:execution:{sam.STACK}-workflow/*"
NONE = ()


def via(service: str) -> tuple:
    return (("StringEquals", "kms:ViaService", f"{service}.{sam.REGION}.amazonaws.com"),)


def table(*actions: str, arn: str = JOBS_TABLE) -> set:
    return {(f"dynamodb:{action}", arn, NONE) for action in actions}


def s3(action: str, path: str, condition: tuple = NONE) -> set:
    return {(f"s3:{action}", f"{BUCKET}{path}", condition)}


def upload(path: str) -> set:
    # S3ObjectStore.upload_file: boto3's upload_file goes multipart for large files and aborts on failure.
    return s3("PutObject", path) | s3("AbortMultipartUpload", path)


# SnsNotifier.notify: sns:Publish; SNS encrypts with AlertKey on the publisher's behalf.
ALERTS = {("sns:Publish", TOPIC, NONE)} | {
    (a, KEY, via("sns")) for a in ("kms:GenerateDataKey", "kms:Decrypt")
}
# Lambda's on-failure destination sends with the function's role; the queue is encrypted with AlertKey.
ON_FAILURE = {("sqs:SendMessage", FAILED_EVENTS, NONE)} | {
    (a, KEY, via("sqs")) for a in ("kms:GenerateDataKey", "kms:Decrypt")
}
# token_provider_from_secret: parameters.get_secret(TOKEN_SECRET_ID), only when one is set.
TOKEN = {("secretsmanager:GetSecretValue", SECRET, NONE)}
# SsmProfileStore.get: the client profiles under /<stack>/clients/ (Powertools' SSMProvider, get_parameter).
PROFILES = {("ssm:GetParameter", f"arn:aws:ssm:{ARN}:parameter/{sam.STACK}/clients/*", NONE)}
CLIENT_SECRET_PREFIX = "profile-sync/clients/"
# token_provider_from_secret(profile.token_secret_id): the secrets under the stack's ClientTokenSecretPrefix.
CLIENT_TOKENS = {
    (
        "secretsmanager:GetSecretValue",
        f"arn:aws:secretsmanager:{sam.REGION}:{sam.ACCOUNT}:secret:{CLIENT_SECRET_PREFIX}*",
        NONE,
    )
}
# workflow.batch_end and workflow.single: the batch file and manifest.json (jobs/<id>/...).
BATCH_READS = s3("GetObject", "/jobs/*")
# delta.update_from_job (finalize_job): reads the snapshot files and writes new ones (delta/<client>/...),
# then DynamoSnapshotPointers.put: a conditional PutItem of the DELTA#<client>#<idType> pointer only.
DELTA_UPDATE = (
    s3("GetObject", "/delta/*")
    | upload("/delta/*")
    # delta.update._clean_up: snapshot files replaced more than DeltaCleanupGraceSeconds ago
    | s3("DeleteObject", "/delta/*")
    | {("dynamodb:PutItem", JOBS_TABLE, (("ForAllValues:StringLike", "dynamodb:LeadingKeys", ("DELTA#*",)),))}
)

CALLS: dict[str, set] = {
    "IngestFunctionRole": (
        # ingest._split: objects.open(drop.key); a drop gone before it is read must answer 404
        # (FileNotFoundError -> the drop is rejected), which S3 gives only with ListBucket.
        s3("GetObject", "/incoming/*")
        | s3("ListBucket", "")
        # batches/*, rejects.csv, manifest.json, batches.json under jobs/<jobId>/
        | upload("/jobs/*")
        # delta.diff_job: the client's snapshot files (the pointer: GetItem below)
        | s3("GetObject", "/delta/*")
        # DynamoJobStore: create_job (PutItem), get_job, update_job, put_batches (batch_writer)
        | table("GetItem", "PutItem", "UpdateItem", "BatchWriteItem")
        # Powertools' DynamoDBPersistenceLayer: put (conditional), get, update, delete on failure
        | table("GetItem", "PutItem", "UpdateItem", "DeleteItem", arn=IDEMPOTENCY_TABLE)
        # StepFunctionsWorkflow.start
        | {("states:StartExecution", INGEST_TARGET, NONE)}
        | ALERTS  # a rejected file
        | ON_FAILURE
        | PROFILES
    ),
    "ReserveQuotaFunctionRole": (
        # get_batch, DynamoDailyRowQuota.reserve (update_item, get_item), update_batch, get_job, update_job
        table("GetItem", "UpdateItem")
        | ALERTS  # the quota-wait notice
        | PROFILES  # the client's daily quota and account
    ),
    "SubmitBatchFunctionRole": (
        # the batch file; a refusal records the batch: manifest.json, results/batch-N.csv
        BATCH_READS
        | upload("/jobs/*/results/*")
        # get_batch, get_job (the job's stop flag), update_batch; DynamoDBRateLimiter.try_acquire
        | table("GetItem", "UpdateItem")
        | TOKEN
        | PROFILES
    ),
    "PollBatchFunctionRole": BATCH_READS
    | upload("/jobs/*/results/*")
    | table("GetItem", "UpdateItem")
    | TOKEN
    | PROFILES,
    "FailBatchFunctionRole": BATCH_READS | upload("/jobs/*/results/*") | table("GetItem", "UpdateItem"),
    "SingleUpdateFunctionRole": (
        BATCH_READS
        | upload("/jobs/*/results/*")
        # get_batch, DynamoRollingQuota (get_item, put_item), update_batch, get_job, update_job, limiter
        | table("GetItem", "PutItem", "UpdateItem")
        | ALERTS  # the quota-wait notice
        | TOKEN
        | PROFILES
    ),
    "FinalizeFunctionRole": (
        # rejects.csv and results/* (list_keys under jobs/<jobId>/results/), then report/*
        BATCH_READS
        | s3("ListBucket", "", (("StringLike", "s3:prefix", "jobs/*"),))
        | upload("/jobs/*/report/*")
        # settle_unfinished: a batch left without counts gets its rows in results/
        | upload("/jobs/*/results/*")
        # REDRIVE_PENDING_AUTO: the pending rows as a drop under incoming/<client>/redrive=<jobId>/
        | upload("/incoming/*/redrive=*")
        # get_job, list_batches (query), update_job
        | table("GetItem", "Query", "UpdateItem")
        | DELTA_UPDATE
        | ALERTS
    ),
    # workflow.failure.job_failed: list_batches, get_job, then finalize_job (same reads and writes), notify
    "JobFailedFunctionRole": (
        BATCH_READS
        | s3("ListBucket", "", (("StringLike", "s3:prefix", "jobs/*"),))
        | upload("/jobs/*/report/*")
        | upload("/jobs/*/results/*")
        | table("GetItem", "Query", "UpdateItem")
        | DELTA_UPDATE
        | ALERTS
    ),
    # landing_step.check_landing: the job's manifest, batch files and results (JobFiles lists
    # results/), its report; put_json of landing/sample.json and report/summary.json; the profile
    # fetch (token, profiles, the calls-per-minute window); the notice. Nothing under incoming/: the
    # automatic re-drive of pending rows is Finalize's.
    "LandingCheckFunctionRole": (
        BATCH_READS
        | s3("ListBucket", "", (("StringLike", "s3:prefix", "jobs/*"),))
        | s3("PutObject", "/jobs/*/landing/*")
        | s3("PutObject", "/jobs/*/report/*")
        | table("GetItem", "Query", "UpdateItem")
        | ALERTS
        | TOKEN
        | PROFILES
    ),
    # An execution stopped by hand or timed out: job_failed again, the same reads and writes
    "ExecutionAlertFunctionRole": (
        BATCH_READS
        | s3("ListBucket", "", (("StringLike", "s3:prefix", "jobs/*"),))
        | upload("/jobs/*/report/*")
        | upload("/jobs/*/results/*")
        | table("GetItem", "Query", "UpdateItem")
        | ALERTS
        | ON_FAILURE
    ),
    "ProfileSyncStateMachineRole": (
        # each Task's lambda:invoke (statemachine/profile_sync.asl.json), by exact ARN
        {
            ("lambda:InvokeFunction", f"arn:aws:lambda:{ARN}:function:<{name}Function>", NONE)
            for name in (
                "ReserveQuota",
                "SubmitBatch",
                "PollBatch",
                "FailBatch",
                "SingleUpdate",
                "Finalize",
                "JobFailed",
                "LandingCheck",
            )
        }
        # the Distributed Map's ItemReader (s3:getObject of batchesKey); no ResultWriter
        | s3("GetObject", "/jobs/*/batches.json")
        # the Distributed Map runs child executions of its own state machine
        | {
            ("states:StartExecution", WORKFLOW, NONE),
            ("states:DescribeExecution", WORKFLOW_EXECUTIONS, NONE),
            ("states:StopExecution", WORKFLOW_EXECUTIONS, NONE),
        }
        # logging to CloudWatch Logs: the log-delivery actions, which take no resource-level permission
        | {
            (f"logs:{action}", "*", NONE)
            for action in (
                "CreateLogDelivery",
                "GetLogDelivery",
                "UpdateLogDelivery",
                "DeleteLogDelivery",
                "ListLogDeliveries",
                "PutResourcePolicy",
                "DescribeResourcePolicies",
                "DescribeLogGroups",
            )
        }
    ),
}
# Lambda's logs and traces (SAM adds these to every function role; Tracing adds X-Ray to the workflow's).
LAMBDA_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
MANAGED = {name: LAMBDA_MANAGED for name in CALLS} | {
    "ProfileSyncStateMachineRole": {"arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}
}


@pytest.fixture(scope="module")
def with_secret() -> dict:
    return sam.roles({"TokenSecretId": SECRET_NAME})


def _difference(role: str, granted: set, expected: set) -> str:
    more = "\n  ".join(map(str, sorted(granted - expected)))
    less = "\n  ".join(map(str, sorted(expected - granted)))
    return f"{role}\n granted but never called:\n  {more}\n called but not granted:\n  {less}"


def test_every_role_grants_exactly_what_its_code_calls(with_secret) -> None:
    assert set(with_secret) == set(CALLS)
    for role, expected in CALLS.items():
        granted = with_secret[role]["grants"]
        assert granted == expected, _difference(role, granted, expected)
        assert with_secret[role]["managed"] == MANAGED[role], role


def test_without_a_token_secret_no_role_reads_secrets() -> None:
    for role, found in sam.roles({"TokenSecretId": ""}).items():
        assert found["grants"] == CALLS[role] - TOKEN, role


def test_client_token_secrets_are_granted_only_under_the_prefix_folder_when_one_is_set() -> None:
    with_prefix = sam.roles({"TokenSecretId": "", "ClientTokenSecretPrefix": CLIENT_SECRET_PREFIX})
    for role, found in with_prefix.items():
        target_caller = role in {
            "SubmitBatchFunctionRole",
            "PollBatchFunctionRole",
            "SingleUpdateFunctionRole",
            "LandingCheckFunctionRole",
        }
        expected = CALLS[role] - TOKEN | (CLIENT_TOKENS if target_caller else set())
        assert found["grants"] == expected, _difference(role, found["grants"], expected)
    # A folder, never a bare name prefix ("profile-sync/c" would also match "profile-sync/crown-jewels").
    pattern = sam.sam_template()["Parameters"]["ClientTokenSecretPrefix"]["AllowedPattern"]
    assert re.fullmatch(pattern, CLIENT_SECRET_PREFIX) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "profile-sync/c")


def test_the_secret_is_granted_by_its_exact_name_not_a_prefix(with_secret) -> None:
    readers = {
        r for r, found in with_secret.items() for g in found["grants"] if g[0].startswith("secretsmanager:")
    }
    assert readers == {
        "SubmitBatchFunctionRole",
        "PollBatchFunctionRole",
        "SingleUpdateFunctionRole",
        "LandingCheckFunctionRole",
    }
    resource = re.escape(SECRET).replace(r"\?", ".")
    assert re.fullmatch(resource, SECRET.replace("??????", "AbC123"))
    # `${TokenSecretId}*` matched these too.
    assert not re.fullmatch(resource, SECRET.replace("-??????", "-admin-AbC123"))
    assert not re.fullmatch(resource, SECRET.replace("-??????", "2-AbC123"))
    # The parameter takes a name: an ARN would make the grant match nothing.
    pattern = sam.sam_template()["Parameters"]["TokenSecretId"]["AllowedPattern"]
    assert re.fullmatch(pattern, SECRET_NAME) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, SECRET.replace("-??????", ""))


def test_nothing_may_delete_objects_change_the_bucket_or_use_a_whole_bucket_or_table(with_secret) -> None:
    deleters = set()
    for role, found in with_secret.items():
        for action, resource, _ in found["grants"]:
            if action == "s3:DeleteObject":
                # Only delta sync's replaced snapshot files, by the two steps that merge snapshots.
                assert resource == f"{BUCKET}/delta/*", (role, resource)
                deleters.add(role)
                continue
            assert action not in {"s3:PutLifecycleConfiguration", "s3:PutObjectAcl"}, role
            assert not action.endswith("*") and action != "*", (role, action)
            assert resource != f"{BUCKET}/*", (role, action)
            assert not resource.startswith(f"{JOBS_TABLE}/index"), (role, action)
            if resource == "*":
                assert role == "ProfileSyncStateMachineRole" and action.startswith("logs:"), (role, action)
    assert deleters == {"FinalizeFunctionRole", "JobFailedFunctionRole"}


def test_the_comparison_catches_a_widened_role() -> None:
    """The check can fail: the old S3CrudPolicy back on ReserveQuota, and a logs:* on the workflow."""
    template = sam.sam_template()
    template["Resources"]["ReserveQuotaFunction"]["Properties"]["Policies"].append(
        {"S3CrudPolicy": {"BucketName": {"Ref": "DropBucket"}}}
    )
    template["Resources"]["ProfileSyncStateMachine"]["Properties"]["Policies"].append(
        "CloudWatchLogsFullAccess"
    )
    widened = sam.roles({"TokenSecretId": SECRET_NAME}, sam=template)
    extra = widened["ReserveQuotaFunctionRole"]["grants"] - CALLS["ReserveQuotaFunctionRole"]
    assert ("s3:DeleteObject", f"{BUCKET}/*", NONE) in extra
    assert ("s3:PutLifecycleConfiguration", BUCKET, NONE) in extra
    assert (
        "arn:aws:iam::aws:policy/CloudWatchLogsFullAccess"
        in widened["ProfileSyncStateMachineRole"]["managed"]
    )
