"""The workflow's definition and template.yaml's DefinitionSubstitutions agree, and the definition
Step Functions receives (the substitutions applied, as the local runner applies them) is valid ASL."""

from __future__ import annotations

import json
import re

from profile_sync_local.stack.project import STATE_MACHINE, state_machine_definition, template


def substitutions() -> dict:
    return template()["Resources"]["ProfileSyncStateMachine"]["Properties"]["DefinitionSubstitutions"]


def test_every_placeholder_has_a_substitution_and_every_substitution_a_placeholder() -> None:
    placeholders = set(re.findall(r"\$\{([^}]+)\}", STATE_MACHINE.read_text()))
    assert placeholders == set(substitutions())
    assert {"MaxConcurrency", "SubmitBatchFunctionArn"} <= placeholders


def test_max_concurrency_reaches_the_map_as_a_number_from_the_stack_parameter(monkeypatch) -> None:
    assert substitutions()["MaxConcurrency"] == {"Ref": "MaxConcurrency"}
    monkeypatch.setenv("MAX_CONCURRENCY", "7")
    send = json.loads(state_machine_definition())["States"]["SendBatches"]
    assert send["MaxConcurrency"] == 7
    assert "MaxConcurrencyPath" not in send
    # The state machine is the only reader: no function is given it.
    resources = template()["Resources"]
    environments = [template()["Globals"]["Function"]["Environment"]["Variables"]] + [
        r["Properties"].get("Environment", {}).get("Variables", {})
        for r in resources.values()
        if r["Type"] == "AWS::Serverless::Function"
    ]
    assert not any("MAX_CONCURRENCY" in variables for variables in environments)
