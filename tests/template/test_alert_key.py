"""Alarms can notify: the alert topic is encrypted with a key CloudWatch and EventBridge may use.

With the AWS-managed alias/aws/sns key (whose policy no one can change) CloudWatch's publish fails
and every alarm stays silent; a customer-managed key says who may use it.
"""

from __future__ import annotations

import pytest

from tests.template import sam

KEY_ARN = f"arn:aws:kms:{sam.REGION}:{sam.ACCOUNT}:key/<AlertKey.KeyId>"
ROOT = f"arn:aws:iam::{sam.ACCOUNT}:root"
ALARMS_OF_THIS_STACK = f"arn:aws:cloudwatch:{sam.REGION}:{sam.ACCOUNT}:alarm:{sam.STACK}-*"


@pytest.fixture(scope="module")
def resources() -> dict:
    """The stack's resources and those of the templates it nests (the alarms)."""
    found = sam.resolved()
    for logical_id in sam.nested_locations():
        found |= sam.nested(logical_id)
    return found


def _statements(policy: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy["Statement"]}


def _principal_statements(policy: dict, principal: dict) -> list[dict]:
    return [s for s in policy["Statement"] if s["Principal"] == principal and s["Effect"] == "Allow"]


def test_the_topic_and_the_failed_events_queue_use_the_stacks_own_rotating_key(resources) -> None:
    assert resources["AlertTopic"]["Properties"]["KmsMasterKeyId"] == KEY_ARN
    queue = resources["IngestFailedEventsQueue"]["Properties"]
    assert queue["KmsMasterKeyId"] == KEY_ARN
    assert "SqsManagedSseEnabled" not in queue
    key = resources["AlertKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    # Nothing else in the stack points at an AWS-managed key an alarm could not use.
    assert "alias/aws/" not in str(resources)


def test_every_alarm_publishes_to_the_topic_cloudwatch_may_encrypt_for(resources) -> None:
    alarms = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert len(alarms) >= 7
    topic = f"arn:aws:sns:{sam.REGION}:{sam.ACCOUNT}:<AlertTopic.TopicName>"
    assert all(a["Properties"]["AlarmActions"] == [topic] for a in alarms)
    # Generated alarm names start with their stack's name, which for a nested stack starts with the
    # parent's name and a hyphen: that is what the source condition matches.
    assert all("AlarmName" not in a["Properties"] for a in alarms)


def test_cloudwatch_may_use_the_key_only_for_this_stacks_alarms(resources) -> None:
    policy = resources["AlertKey"]["Properties"]["KeyPolicy"]
    (statement,) = _principal_statements(policy, {"Service": "cloudwatch.amazonaws.com"})
    assert set(statement["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": sam.ACCOUNT},
        "ArnLike": {"aws:SourceArn": ALARMS_OF_THIS_STACK},
    }


def test_eventbridge_may_use_the_key_and_the_topic_policy_holds_its_source_condition(resources) -> None:
    policy = resources["AlertKey"]["Properties"]["KeyPolicy"]
    (statement,) = _principal_statements(policy, {"Service": "events.amazonaws.com"})
    assert set(statement["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    # SNS passes no aws:SourceAccount/aws:SourceArn to KMS for EventBridge: a condition here would
    # drop every event. The topic policy carries it.
    assert "Condition" not in statement
    topic_policy = resources["AlertTopicPolicy"]["Properties"]["PolicyDocument"]
    (events,) = _principal_statements(topic_policy, {"Service": "events.amazonaws.com"})
    assert events["Action"] == "sns:Publish"
    assert events["Condition"] == {"StringEquals": {"aws:SourceAccount": sam.ACCOUNT}}
    (alarms,) = _principal_statements(topic_policy, {"Service": "cloudwatch.amazonaws.com"})
    assert alarms["Condition"]["ArnLike"] == {"aws:SourceArn": ALARMS_OF_THIS_STACK}
    deny = _statements(topic_policy)["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_accounts_principals_use_the_key_only_through_sns_and_sqs(resources) -> None:
    """The functions' roles (by their IAM policies) and people reading the queue: never KMS directly."""
    policy = resources["AlertKey"]["Properties"]["KeyPolicy"]
    account = _principal_statements(policy, {"AWS": ROOT})
    use = [s for s in account if {"kms:Decrypt", "kms:GenerateDataKey"} & set(s["Action"])]
    (statement,) = use
    assert statement["Condition"] == {
        "StringEquals": {
            "kms:CallerAccount": sam.ACCOUNT,
            "kms:ViaService": [f"sns.{sam.REGION}.amazonaws.com", f"sqs.{sam.REGION}.amazonaws.com"],
        }
    }
    # The administering statement holds no use of the key (no kms:*, Encrypt, Decrypt, GenerateDataKey)
    # yet keeps PutKeyPolicy, so the account can never be locked out of its key.
    (admin,) = [s for s in account if s is not statement]
    assert not {"kms:*", "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*"} & set(admin["Action"])
    assert not any(a.startswith("kms:GenerateDataKey") for a in admin["Action"])
    assert "kms:Put*" in admin["Action"]
    # No one else: no wildcard principal.
    principals = [s["Principal"] for s in policy["Statement"]]
    assert all(p != "*" and p.get("AWS") != "*" for p in principals)
    assert len(principals) == 4


def test_every_role_that_publishes_may_encrypt_for_the_topic(resources) -> None:
    """A publisher without kms:GenerateDataKey on the key fails to publish to an encrypted topic."""
    for role in (r for r in resources.values() if r["Type"] == "AWS::IAM::Role"):
        found = sam.grants(role)
        actions = {g[0] for g in found}
        if "sns:Publish" in actions:
            via_sns = {(a, c) for a, r, c in found if r == KEY_ARN and "sns." in str(c)}
            assert {a for a, _ in via_sns} == {"kms:GenerateDataKey", "kms:Decrypt"}, role
        if "sqs:SendMessage" in actions:
            via_sqs = {a for a, r, c in found if r == KEY_ARN and "sqs." in str(c)}
            assert via_sqs == {"kms:GenerateDataKey", "kms:Decrypt"}, role
