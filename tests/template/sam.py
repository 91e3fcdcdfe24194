"""template.yaml as CloudFormation receives it: SAM's own translator expands it, then the intrinsic
functions are resolved for given Parameter values, so a test reads plain policies. The templates
it nests (observability.yaml) are resolved with the Parameter values the stack passes them.

A resource's name reads `<LogicalId>`, another attribute `<LogicalId.Attribute>`, and an ARN is spelt
out from them whichever way the template reaches it (`!GetAtt DropBucket.Arn` and SAM's
`arn:${AWS::Partition}:s3:::${bucketName}` both read `arn:aws:s3:::<DropBucket>`); the pseudo
parameters are a fixed account, region and stack name.
"""

from __future__ import annotations

import copy
import os
import re
from functools import cache
from typing import Any
from unittest import mock

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from profile_sync_local.stack.project import ROOT

ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "profile-sync"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()
_ARN = f"arn:aws:{{service}}:{REGION}:{ACCOUNT}:"
# Resource type -> (what its Ref returns, its Arn attribute), from the names it is built of.
ARNS = {
    "AWS::S3::Bucket": ("<{id}>", "arn:aws:s3:::<{id}>"),
    "AWS::DynamoDB::Table": ("<{id}>", _ARN.format(service="dynamodb") + "table/<{id}>"),
    "AWS::SNS::Topic": (_ARN.format(service="sns") + "<{id}.TopicName>", None),
    "AWS::SQS::Queue": ("<{id}.QueueUrl>", _ARN.format(service="sqs") + "<{id}.QueueName>"),
    "AWS::KMS::Key": ("<{id}.KeyId>", _ARN.format(service="kms") + "key/<{id}.KeyId>"),
    "AWS::Lambda::Function": ("<{id}>", _ARN.format(service="lambda") + "function:<{id}>"),
    "AWS::StepFunctions::StateMachine": (_ARN.format(service="states") + "stateMachine:<{id}.Name>", None),
}


class _BundledPolicies:
    """The managed-policy loader: SAM's bundled map of AWS managed policies answers; never IAM."""

    def load(self) -> dict[str, str]:
        return {}


@cache
def _sam_text(name: str = "template.yaml") -> str:
    return (ROOT / name).read_text()


def nested_locations(sam: dict | None = None) -> dict[str, str]:
    """Logical id -> template path, for each nested application with a local Location."""
    resources = (sam if sam is not None else sam_template())["Resources"]
    return {
        logical_id: resource["Properties"]["Location"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Application"
        and isinstance(resource["Properties"]["Location"], str)
    }


def sam_template(text: str | None = None) -> dict:
    """template.yaml (or the given text) parsed as SAM parses it (!Ref etc. as Ref / Fn::*)."""
    return yaml_parse(text if text is not None else _sam_text())


def expand(sam: dict | None = None) -> dict:
    """The CloudFormation template SAM's translator makes (code, definition and nested template
    locations stubbed)."""
    sam = copy.deepcopy(sam if sam is not None else sam_template())
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = "s3://bucket/key"  # what `sam package` puts there
        if resource["Type"] == "AWS::Serverless::Application" and isinstance(props.get("Location"), str):
            props["Location"] = "https://bucket.s3.amazonaws.com/key.template"  # as `sam package` does
        if "DefinitionUri" in props:
            props["DefinitionUri"] = {"Bucket": "bucket", "Key": "key"}  # as `sam package` does
    # The translator takes the region from a boto3 session: the fixed one, whatever this machine has.
    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}):
        return transform(sam, {}, _BundledPolicies())


class Resolver:
    """Resolves intrinsic functions for the given Parameter values (defaults for the others)."""

    def __init__(self, cfn: dict, parameters: dict[str, str] | None = None) -> None:
        self.cfn = cfn
        self.values = {name: str(p.get("Default", "")) for name, p in cfn.get("Parameters", {}).items()}
        self.values.update(parameters or {})
        self.conditions = cfn.get("Conditions", {})

    def ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        assert name in self.cfn["Resources"], f"Ref to an unknown name: {name}"
        kind = self.cfn["Resources"][name]["Type"]
        return ARNS[kind][0].format(id=name) if kind in ARNS else f"<{name}>"

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.cfn["Resources"][name]["Type"]
        if attribute == "Arn" and ARNS.get(kind, (None, None))[1]:
            return ARNS[kind][1].format(id=name)
        if kind == "AWS::SNS::Topic" and attribute == "TopicArn":
            return self.ref(name)
        if kind == "AWS::KMS::Key" and attribute == "KeyId":
            return f"<{name}.KeyId>"
        return f"<{name}.{attribute}>"

    def condition(self, name: str) -> bool:
        return bool(self(self.conditions[name]))

    def sub(self, text: str, variables: dict) -> str:
        def one(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(self(variables[name]))
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                return self.get_att(*(arg if isinstance(arg, list) else arg.split(".", 1)))
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, variables)
            if key == "Fn::If":
                name, yes, no = arg
                return self(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                left, right = (self(a) for a in arg)
                return left == right
            if key == "Fn::Not":
                return not self(arg[0])
            if key == "Fn::And":
                return all(self(a) for a in arg)
            if key == "Fn::Or":
                return any(self(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(i) for i in self(items))
        return {k: v for k, v in ((k, self(v)) for k, v in value.items()) if v is not NO_VALUE}


def resolved(parameters: dict[str, str] | None = None, sam: dict | None = None) -> dict:
    """The expanded template's Resources with every intrinsic function resolved."""
    cfn = expand(sam)
    return Resolver(cfn, parameters)(cfn["Resources"])


def nested(logical_id: str, parameters: dict[str, str] | None = None) -> dict:
    """The Resources of the template the stack nests as logical_id, resolved with the Parameter
    values the stack passes it (themselves resolved for the stack's given Parameters)."""
    passed = resolved(parameters)[logical_id]["Properties"].get("Parameters", {})
    child = yaml_parse(_sam_text(nested_locations()[logical_id]))
    return Resolver(child, {name: str(value) for name, value in passed.items()})(child["Resources"])


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _condition(condition: dict | None) -> tuple:
    """A statement's Condition as a sorted tuple of (operator, key, value(s))."""
    found = []
    for operator, tests in (condition or {}).items():
        for key, expected in tests.items():
            found.append((operator, key, tuple(expected) if isinstance(expected, list) else expected))
    return tuple(sorted(found))


def grants(role: dict) -> set[tuple[str, str, tuple]]:
    """Every (action, resource, condition) an IAM role's inline policies allow.

    Deny, NotAction and NotResource fail: the roles only ever list what they may do.
    """
    found = set()
    for policy in role["Properties"].get("Policies", []):
        for statement in _listed(policy["PolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow", statement
            assert "NotAction" not in statement and "NotResource" not in statement, statement
            condition = _condition(statement.get("Condition"))
            for action in _listed(statement["Action"]):
                for resource in _listed(statement["Resource"]):
                    found.add((action, resource, condition))
    return found


def roles(parameters: dict[str, str] | None = None, sam: dict | None = None) -> dict[str, dict]:
    """Role logical id -> {"grants": {...}, "managed": {...}} for every IAM role of the stack."""
    found = {}
    for logical_id, resource in resolved(parameters, sam).items():
        if resource["Type"] == "AWS::IAM::Role":
            found[logical_id] = {
                "grants": grants(resource),
                "managed": set(resource["Properties"].get("ManagedPolicyArns", [])),
            }
    return found
