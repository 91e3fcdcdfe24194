"""Each function is given exactly the environment variables it reads (template.yaml), no fewer, no more.

Settings has a default for every field: a function not given the variable of a setting it reads
would silently use the default instead of the stack's Parameter. So the real handlers run the
scenarios that reach every function (a bulk job with a quota wait and failed rows, a refused batch,
single updates, a failed step, an aborted execution), each invocation as a cold start of its own
container, and every read is recorded with the function that made it: each Settings field read
(attribute access, outside Settings' own validation, copy and parsing) and each os.environ read
(the handlers' resource names, Powertools, botocore). Then each function's Environment (Globals and
its own) must be what it read of the variables the stack declares, and every Settings field a
function reads must be a variable the stack declares (or be listed in NOT_PARAMETERS, with why).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import fields

import pytest

from profile_sync.settings import Settings
from profile_sync_local.stack import functions as stack_functions
from profile_sync_local.stack.project import ROOT, template
from profile_sync_local.stack.workflow import run_workflow
from tests.conftest import FakeContext, event_path
from tests.workflow.conftest import pools_run_in_the_submitters_context

# Settings fields a function reads that the stack does not expose as a Parameter: fixed by Target
# or by how the code works, not by the account. A function gets the default on purpose.
NOT_PARAMETERS = {
    "ID_MAX_CHARS": "Target's thirdPartyId limit (TARGET_ID_MAX_CHARS)",
    "SINGLE_GET_MAX_BYTES": "Target's single-update GET size limit",
    "SINGLE_POST_MAX_BYTES": "Target's single-update POST size limit",
    "HTTP_TIMEOUT_SECONDS": "the Target client's read timeout, well inside every function's Timeout",
    "HTTP_MAX_ATTEMPTS": "the Target client's retries within one invocation",
    "LAMBDA_TIME_MARGIN_SECONDS": "time a step keeps to record its work, whatever the account",
    "VANISHED_AFTER_POLLS": "how Target forgets statuses (its last ones, for 24 hours)",
    "SINGLE_UPDATE_CHUNK_ROWS": "rows per single-update invocation, sized to its Timeout",
}
# Variables a function is given but did not read in these scenarios, each with the path that reads it.
NOT_READ_HERE: dict[str, dict[str, str]] = {
    "IngestFunction": {
        "INGEST_RETRY_ATTEMPTS": "read when the workflow cannot be started (ingest's last try)"
    },
}

_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)
_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("quiet", default=False)
SETTINGS = {f.name for f in fields(Settings)}


def _logical_ids() -> dict[str, str]:
    """Function folder -> logical id."""
    return {
        r["Properties"]["CodeUri"].strip("/").removeprefix("functions/"): logical_id
        for logical_id, r in template()["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }


def given(logical_id: str) -> set[str]:
    """The variables the template gives a function: the Globals' and its own."""
    own = template()["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return set(template()["Globals"]["Function"]["Environment"]["Variables"]) | set(own)


def declared() -> set[str]:
    """Every variable the template gives any function."""
    return set().union(*(given(logical_id) for logical_id in _logical_ids().values()))


class Reads:
    def __init__(self) -> None:
        self.by_function: dict[str, set[str]] = defaultdict(set)

    def add(self, name: str) -> None:
        function = _function.get()
        if function is not None and not _quiet.get():
            self.by_function[function].add(name)


def _quietly(method):
    """Settings' own machinery (validation, copies, parsing, equality) reads fields no step uses."""

    @functools.wraps(method)
    def run(*args, **kwargs):
        token = _quiet.set(True)
        try:
            return method(*args, **kwargs)
        finally:
            _quiet.reset(token)

    return run


@contextlib.contextmanager
def running(folder: str) -> Iterator[None]:
    token = _function.set(folder)
    try:
        yield
    finally:
        _function.reset(token)


@pytest.fixture
def reads(pipeline, monkeypatch) -> Reads:
    recorder = Reads()
    # Every Settings field read, as its variable's name.
    original_getattribute = Settings.__getattribute__

    def getattribute(self, name):
        if name in SETTINGS:
            recorder.add(name.upper())
        return original_getattribute(self, name)

    monkeypatch.setattr(Settings, "__getattribute__", getattribute)
    for name in ("__post_init__", "with_overrides", "__eq__", "__repr__", "__hash__"):
        monkeypatch.setattr(Settings, name, _quietly(getattr(Settings, name)))
    monkeypatch.setattr(Settings, "from_env", classmethod(_quietly(Settings.from_env.__func__)))
    # Every environment read: os.environ[...], .get, `in` and os.getenv all go through __getitem__.
    # A copy of the whole environment (botocore keeps one) or a walk over it reads no one name.
    original_getitem = type(os.environ).__getitem__

    def getitem(self, key):
        if sys._getframe(1).f_code.co_name not in {"copy", "__iter__"}:
            recorder.add(key)
        return original_getitem(self, key)

    monkeypatch.setattr(type(os.environ), "__getitem__", getitem)
    pools_run_in_the_submitters_context(monkeypatch)
    # Each invocation is a cold start of its function's own container: its module imported and its
    # ports built from its environment, as that function (one process would share them otherwise).
    load = stack_functions.load_function

    def load_as_its_own_container(folder: str):
        with running(folder):
            module = load(folder)

        def invoke(event: dict, context: object) -> dict:
            with running(folder):
                return load(folder).lambda_handler(event, context)

        module.lambda_handler = invoke
        return module

    monkeypatch.setattr(stack_functions, "load_function", load_as_its_own_container)
    return recorder


def _visitors(count: int) -> bytes:
    return ("thirdPartyId,tier\n" + "".join(f"CRM-{i:06d},gold\n" for i in range(1, count + 1))).encode()


def _run_every_function(pipeline, monkeypatch) -> None:
    # One batch at a time: each invocation's cold start owns the process while it runs.
    pipeline.setting(max_concurrency=1, batch_max_rows=4, daily_row_quota=6)
    pipeline.emulator.configure(fail_ids={"CRM-000002"}, polls_until_complete=1)
    # A bulk job: rejects, a batch waiting for the next day's quota, failed rows (ingest, reserve,
    # submit, poll, finalize), with delta sync (the diff at ingest, the snapshot update at finalize).
    bulk = pipeline.run(_visitors(8) + b",empty id\n", folders="delta=on/")
    assert bulk.job["status"] == "COMPLETE_WITH_ERRORS", bulk.job.get("reason")
    # Single updates.
    single = pipeline.run(_visitors(4), folders="api=single/")
    assert single.job["status"] in {"COMPLETE", "COMPLETE_WITH_ERRORS"}, single.job.get("reason")
    # Target answers 500 to every submit: the batch's rows fail (fail_batch).
    pipeline.emulator.configure(error_500_share=1.0)
    refused = pipeline.run(_visitors(2))
    assert refused.job["status"] == "COMPLETE_WITH_ERRORS", refused.job.get("reason")
    pipeline.emulator.configure(error_500_share=0.0)
    # A step that fails: the workflow's Catch runs job_failed (its report updates the delta snapshot).
    job = pipeline.ingest(_visitors(2), folders="delta=on/")
    handlers = stack_functions.workflow_handlers()

    def broken(event: dict, context: object) -> dict:
        raise RuntimeError("disk on fire")

    execution = run_workflow(
        pipeline.execution_input(job), clock=pipeline.clock, handlers=handlers | {"Finalize": broken}
    )
    assert execution.status == "FAILED", execution.describe()
    # An execution stopped by hand: EventBridge tells the execution alert.
    other = pipeline.ingest(_visitors(2))
    event = json.loads(event_path("execution_alert_execution_aborted.json").read_text())
    event["detail"]["name"] = other["jobId"]
    assert stack_functions.load_function("execution_alert").lambda_handler(event, FakeContext())["notified"]


def test_each_function_is_given_exactly_the_variables_it_reads(pipeline, reads, monkeypatch) -> None:
    _run_every_function(pipeline, monkeypatch)
    functions = _logical_ids()
    # It checked something: every function of the template ran and read its environment.
    assert set(reads.by_function) == set(functions), sorted(reads.by_function)
    exposed = declared()
    settings = {name.upper() for name in SETTINGS}
    problems = []
    for folder, logical_id in sorted(functions.items()):
        read = reads.by_function[folder]
        for name in sorted((read & settings) - exposed - set(NOT_PARAMETERS)):
            problems.append(f"{logical_id} reads setting {name}, which the stack declares for no function")
        for name in sorted((read & exposed) - given(logical_id)):
            problems.append(f"{logical_id} reads {name} but is not given it (it would get the default)")
        excused = NOT_READ_HERE.get(logical_id, {})
        for name in sorted(given(logical_id) - read - set(excused)):
            problems.append(f"{logical_id} is given {name} but never read it")
        for name in sorted(set(excused) & read):
            problems.append(f"{logical_id}: {name} is read after all: remove it from NOT_READ_HERE")
    for name in sorted(set(NOT_PARAMETERS) & exposed):
        problems.append(f"{name} is declared in the template: remove it from NOT_PARAMETERS")
    assert not problems, "\n".join(problems)


def test_env_json_gives_each_function_values_for_what_it_is_given() -> None:
    """sam local keeps only variables the template gives a function; each resource name it is given
    must have a local value in env.json (the template's Ref would mean nothing there)."""
    env = json.loads((ROOT / "env.json").read_text())
    functions = _logical_ids().values()
    assert set(env) == {"Parameters", *functions}
    everywhere = set.intersection(*(given(logical_id) for logical_id in functions))
    assert set(env["Parameters"]) <= everywhere
    resources = set(template()["Resources"])
    for logical_id in functions:
        values = {**env["Parameters"], **env[logical_id]}
        assert set(env[logical_id]) <= given(logical_id), logical_id
        own = template()["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        variables = template()["Globals"]["Function"]["Environment"]["Variables"] | own
        names = {k for k, v in variables.items() if isinstance(v, dict) and v.get("Ref") in resources}
        assert names <= set(values), (logical_id, sorted(names - set(values)))
