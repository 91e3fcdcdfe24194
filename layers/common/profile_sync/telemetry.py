"""Metric names shared by the handlers (one namespace, low-cardinality dimensions only)."""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

ROW_METRICS = {
    "succeeded": "RowsSucceeded",
    "failed": "RowsFailed",
    "not_found": "RowsNotFound",
    "pending": "RowsPending",
}


def add_row_counts(metrics: Metrics, counts: dict) -> None:
    """A batch's row outcomes as metrics (counts only: never ids or values)."""
    for name, metric in ROW_METRICS.items():
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=counts.get(name, 0))
