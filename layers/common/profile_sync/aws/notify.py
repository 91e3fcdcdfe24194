"""SNS: messages for a person (counts, ids, reasons; never profile values).

Best-effort: a notice that can't be published is logged (its subject and the error, never the
message) and counted in the NotificationsFailed metric; it never fails the step that sends it, so
it can't change a job's status.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import boto3

from profile_sync import telemetry

if TYPE_CHECKING:  # the stubs are a development dependency, not in the layer
    from mypy_boto3_sns import SNSClient

logger = logging.getLogger(__name__)


class SnsNotifier:
    def __init__(self, topic_arn: str, client: SNSClient | None = None) -> None:
        self.topic_arn = topic_arn
        self._sns = client or boto3.client("sns")

    def notify(self, subject: str, message: str) -> bool:
        """True once SNS accepted the message; False when there is no topic or the publish failed."""
        if not self.topic_arn:
            return False
        try:
            # SNS subjects are limited to 100 characters.
            self._sns.publish(TopicArn=self.topic_arn, Subject=subject[:100], Message=message)
        except Exception as exc:  # any failure: the notice is lost, the job goes on
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            logger.warning(
                "notification not published",
                extra={"subject": subject[:100], "error": type(exc).__name__, "error_code": code},
            )
            telemetry.count_failed_notification()
            return False
        return True
