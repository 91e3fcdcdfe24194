"""SNS: messages for a person (counts, ids, reasons; never profile values)."""

from __future__ import annotations

import boto3


class SnsNotifier:
    def __init__(self, topic_arn: str, client=None) -> None:
        self.topic_arn = topic_arn
        self._sns = client or boto3.client("sns")

    def notify(self, subject: str, message: str) -> None:
        if self.topic_arn:
            # SNS subjects are limited to 100 characters.
            self._sns.publish(TopicArn=self.topic_arn, Subject=subject[:100], Message=message)
