"""The project on disk as the local stack reads it: template.yaml (CloudFormation's short tags read
as data), the tables it declares, the functions' Timeouts, and statemachine/ with the template's
DefinitionSubstitutions applied."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml

from profile_sync.settings import Settings
from profile_sync_local.sfn_local import function_arn, substitute

ROOT = Path(__file__).resolve().parents[3]
STATE_MACHINE = ROOT / "statemachine" / "profile_sync.asl.json"

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
    assert isinstance(node, yaml.MappingNode)  # YAML has no fourth kind of node
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


def function_timeouts() -> dict[str, float]:
    """Each workflow function's Timeout from template.yaml (the Globals' when it sets none)."""
    resources = template()["Resources"]
    default = template()["Globals"]["Function"].get("Timeout", 3)
    return {
        name: float(resources[f"{name}Function"]["Properties"].get("Timeout", default))
        for name in WORKFLOW_FUNCTIONS
    }


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
