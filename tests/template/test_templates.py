"""The templates the stack nests are read by every check the stack's own template is."""

from __future__ import annotations

import re
import tomllib

from profile_sync_local.stack.project import ROOT
from tests.template import sam


def test_sam_validate_and_checkov_read_every_nested_template() -> None:
    """sam validate and checkov read one file each and never follow a nested Location: the Makefile
    names each template (TEMPLATES), and a template nested without being named there would go unread."""
    nested = sam.nested_locations()
    assert nested == {"Observability": "observability.yaml"}
    (line,) = re.findall(r"^TEMPLATES\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert line.split() == ["template.yaml", *nested.values()]


def test_the_nested_template_resolves_with_what_the_stack_passes() -> None:
    """Each alarm watches the stack's own resources once the stack's values are passed in."""
    alarms = {k: r for k, r in sam.nested("Observability").items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert len(alarms) == 7
    machine = f"arn:aws:states:{sam.REGION}:{sam.ACCOUNT}:stateMachine:<ProfileSyncStateMachine.Name>"
    assert alarms["WorkflowFailedAlarm"]["Properties"]["Dimensions"] == [
        {"Name": "StateMachineArn", "Value": machine}
    ]
    queue = alarms["IngestFailedDeliveriesAlarm"]["Properties"]["Dimensions"]
    assert queue == [{"Name": "QueueName", "Value": "<IngestFailedEventsQueue.QueueName>"}]
    threshold = sam.nested("Observability", {"TargetErrorRateThreshold": "35"})["TargetErrorRateAlarm"]
    assert threshold["Properties"]["Threshold"] == "35"


def test_sam_deploy_acknowledges_the_nested_application() -> None:
    """CloudFormation refuses a stack that nests an application without CAPABILITY_AUTO_EXPAND."""
    assert sam.nested_locations()
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    capabilities = config["default"]["deploy"]["parameters"]["capabilities"].split()
    assert {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"} <= set(capabilities)
