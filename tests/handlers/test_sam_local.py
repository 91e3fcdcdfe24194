"""`make sam-local` without Docker: everything but the container, on loopback.

The orchestration (fresh account per event, seeding by the real handlers, the env file sam gets,
the TLS relay to the emulator, the checks of answers and records) runs with an invoker that calls
the handler in this process with exactly the environment the container would get from the env
file. Only `sam local invoke` itself is left out (no Docker engine in `make test`).
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from profile_sync_local.sfn_local.lambda_router import LocalLambdaContext, function_arn
from profile_sync_local.stack import project
from profile_sync_local.stack.functions import load_function
from profile_sync_local.stack.project import ROOT

EVENT_NAMES = sorted(path.name for path in (ROOT / "events").glob("*.json"))


@pytest.fixture(scope="module")
def sam_local():
    sys.path.insert(0, str(ROOT / "local"))  # the package `make sam-local` runs: python -m sam_local
    return importlib.import_module("sam_local")


def in_process(sam_local, world):
    """The container's part: the handler, with only what the env file gives its function."""

    def invoke(logical_id: str, event: dict):
        folder = {v: k for k, v in sam_local.functions().items()}[logical_id]
        with pytest.MonkeyPatch.context() as env:
            for name in sam_local.declared_variables(logical_id):
                env.delenv(name, raising=False)
            for name, value in sam_local.function_env(world.env, logical_id).items():
                env.setenv(name, value)
            env.setenv("REQUESTS_CA_BUNDLE", str(world.ca_file))  # the sam-local build's trust
            context = LocalLambdaContext(
                function_name=logical_id, invoked_function_arn=function_arn(logical_id)
            )
            try:
                value = load_function(folder).lambda_handler(event, context)
            except Exception as exc:  # what sam prints when the handler raises
                return sam_local.parse_output(json.dumps({"errorType": type(exc).__name__}), "")
        return sam_local.Answer(value)

    return invoke


def test_every_event_passes_through_its_function_with_the_env_file_sam_gets(sam_local):
    assert set(sam_local.STEPS) == set(EVENT_NAMES), "every file in events/ needs a step in sam_local.world"
    with sam_local.local_world("127.0.0.1") as world:
        assert world.target_url.startswith("https://127.0.0.1:")  # HTTPS: the token never in clear
        results = sam_local.run_events(world, in_process(sam_local, world), EVENT_NAMES)
    print(sam_local.report(results))
    assert [r.event for r in results if not r.passed] == [], sam_local.report(results)
    assert {r.function for r in results} == set(sam_local.functions().values())


def test_a_wrong_answer_or_a_record_not_written_fails_the_check(sam_local):
    with sam_local.local_world("127.0.0.1") as world:

        def refuses(logical_id, event):
            return sam_local.Answer({"granted": False, "waitSeconds": 3600, "used": 10})

        def writes_nothing(logical_id, event):
            return sam_local.Answer({"done": True, "end": "complete", "counts": {}})

        [quota] = sam_local.run_events(world, refuses, ["reserve_quota_batch.json"])
        [poll] = sam_local.run_events(world, writes_nothing, ["poll_batch_first_poll.json"])
    assert not quota.passed and "granted=False" in quota.problems[0]
    assert not poll.passed and "batch record 'SUBMITTED'" in poll.problems[0]


def test_the_template_declares_the_endpoint_empty_so_it_has_no_effect_in_an_account(sam_local):
    template = project.template()
    assert template["Parameters"]["AwsEndpointUrl"]["Default"] == ""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["AWS_ENDPOINT_URL"] == {"Ref": "AwsEndpointUrl"}


def test_the_env_file_sets_the_endpoint_for_every_function_and_only_what_is_declared(sam_local):
    document = sam_local.env_file({"AWS_ENDPOINT_URL": "http://172.17.0.1:5000", "NOT_DECLARED": "x"})
    for logical_id in sam_local.functions().values():
        env = sam_local.function_env(document, logical_id)
        assert env["AWS_ENDPOINT_URL"] == "http://172.17.0.1:5000", logical_id
        assert "NOT_DECLARED" not in env
        assert set(env) <= sam_local.declared_variables(logical_id)


def test_sam_exits_0_when_the_handler_raises_so_its_output_is_read(sam_local):
    error = '{"errorMessage": "boom", "errorType": "KeyError", "requestId": "x", "stackTrace": []}\n'
    assert "raised KeyError" in sam_local.parse_output("START RequestId: x\n" + error, "").error
    assert "no answer" in sam_local.parse_output("", "Error: Image not found\n").error
    assert sam_local.parse_output('END\n{"granted": true}\n', "").value == {"granted": True}


def test_without_docker_it_says_it_did_not_run_and_why(sam_local, monkeypatch, capsys):
    monkeypatch.setattr(sam_local.cli, "docker_problem", lambda: "no engine here")
    monkeypatch.setattr(sam_local.cli, "run", lambda *a, **k: pytest.fail("must not build or invoke"))
    assert sam_local.main([]) == 0
    assert "sam-local: NOT run (no engine here)" in capsys.readouterr().out
