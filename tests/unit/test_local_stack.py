"""The local harness runs Lambda invocations as threads of one process: each keeps its own metrics."""

from __future__ import annotations

import threading

from profile_sync_local.stack.functions import load_function


def test_concurrent_invocations_flush_their_own_metrics_only():
    """Two invocations of one function at once: the second flushes while the first still adds."""
    metrics = load_function("reserve_quota").metrics
    added, flushed = threading.Event(), threading.Event()
    emitted: dict[str, list[str]] = {}

    def invocation(name: str) -> None:
        metrics.add_metric(name=name, unit="Count", value=1)
        if name == "First":
            added.set()
            flushed.wait(5)
        else:
            added.wait(5)
        blob = metrics.serialize_metric_set()
        metrics.clear_metrics()
        emitted[name] = [m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
        if name == "Second":
            flushed.set()

    threads = [threading.Thread(target=invocation, args=(name,)) for name in ("First", "Second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert emitted == {"First": ["First"], "Second": ["Second"]}
