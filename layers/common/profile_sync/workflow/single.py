"""The single profile update API: a batch's rows sent chunk by chunk, resumable by cursor."""

from __future__ import annotations

import contextvars
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote

from profile_sync.adobe_target.errors import TargetAuthError, TargetError, TargetRetryLater
from profile_sync.model import BatchItem, BatchRecord, JobKeys, RowCounts, RowOutcome, SingleState
from profile_sync.outcomes import rows_csv
from profile_sync.ports import Notifier, RollingQuota, TargetFor
from profile_sync.settings import Settings
from profile_sync.workflow.batch_end import (
    RecordPorts,
    add_single_counts,
    end_single_rest,
    line_runs,
    lines,
    upload_lines,
)
from profile_sync.workflow.common import (
    calls_answer,
    endpoint,
    job_stop,
    short,
    stop_job_for_auth,
    without_tries,
)
from profile_sync.workflow.quota import note_quota_wait


@dataclass(frozen=True)
class SinglePorts(RecordPorts):
    """Single updates: the batch file and its record, the rolling quota, Target, and a person to tell
    about a quota wait."""

    settings: Settings
    target: TargetFor
    single_quota: RollingQuota
    notifier: Notifier


def single_update(ports: SinglePorts, item: BatchItem) -> SingleState:
    """Send the next chunk of a batch's rows through the single profile update API.

    Resumable by cursor: each call reserves the chunk in the rolling 24 h quota, sends it with
    bounded concurrency and records the chunk's answers; a retried call never counts twice. An
    authentication failure stops the job: the rows not sent end pending.
    """
    job_id, batch = item["jobId"], item["batch"]
    cursor = (item.get("single") or {}).get("cursor", 0)
    rows = min(ports.settings.single_update_chunk_rows, batch["rows"] - cursor)
    if rows <= 0:
        return {"cursor": cursor, "done": True, "waitSeconds": 0}
    recorded = (ports.jobs.get_batch(job_id, batch["batchIndex"]) or BatchRecord()).get("cursor", 0)
    if recorded > cursor:  # an earlier try sent and recorded this chunk; its answer was lost
        return {"cursor": recorded, "done": recorded >= batch["rows"], "waitSeconds": 0}
    stop = job_stop(ports.jobs, job_id)
    if stop:
        unsent = end_single_rest(ports, item, cursor, f"not sent to Target: the job stopped. {stop}")
        return {"cursor": batch["rows"], "done": True, "waitSeconds": 0, "counts": unsent}
    decision = ports.single_quota.reserve(
        item["clientCode"], f"{job_id}#{batch['batchIndex']}#{cursor}", rows, ports.now()
    )
    if not decision.granted:
        note_quota_wait(ports.jobs, ports.notifier, item, decision)
        return {"cursor": cursor, "done": False, "waitSeconds": decision.wait_seconds}

    with ports.objects.open(batch["key"]) as body:
        batch_lines = lines(body)
        header = next(batch_lines).decode("utf-8").removeprefix("batch=").split(",")
        chunk = list(itertools.islice(batch_lines, cursor, cursor + rows))
    client = ports.target(item["clientCode"])
    id_type, names = header[0], header[1:]
    refused: list[TargetAuthError] = []
    stopped = threading.Event()  # after an authentication failure no row is sent

    def send(line: bytes) -> tuple[RowOutcome, str]:
        if stopped.is_set():
            return RowOutcome.PENDING, "not sent to Target: the job stopped on an authentication failure"
        fields = line.decode("utf-8").split(",")
        params = {name: value for name, value in zip(names, fields[1:], strict=False) if value}
        try:
            client.single_update(id_type, unquote(fields[0]), params, encoded=True)
            return RowOutcome.SUCCEEDED, ""
        except TargetAuthError as exc:
            stopped.set()
            refused.append(exc)
            return RowOutcome.FAILED, "Target refused authentication for this update"
        except TargetRetryLater as exc:
            return RowOutcome.FAILED, f"Target did not accept the update: {calls_answer(exc)}"
        except TargetError as exc:
            return RowOutcome.FAILED, f"Target refused the update: {short(without_tries(exc), 200)}"

    def in_context(line: bytes) -> tuple[RowOutcome, str]:
        # Each send sees this invocation's context (clock.time_left(): no back-off past the Lambda's end).
        return context.copy().run(send, line)

    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=max(1, ports.settings.single_update_concurrency)) as pool:
        answers = list(pool.map(in_context, chunk))
    reason = ""
    if refused:
        reason = stop_job_for_auth(
            ports.jobs, ports.now, job_id, refused[0], endpoint("GET", client.update_url())
        )
        answers = [
            (outcome, f"{why}. {reason}" if outcome != RowOutcome.SUCCEEDED else why)
            for outcome, why in answers
        ]

    runs = line_runs(ports.objects, item)
    counts: RowCounts = {RowOutcome.SUCCEEDED: 0, RowOutcome.FAILED: 0, RowOutcome.PENDING: 0}
    failures = []
    for offset, (line, (outcome, why)) in enumerate(zip(chunk, answers, strict=True)):
        counts[outcome] += 1
        if outcome != RowOutcome.SUCCEEDED:
            visitor_id = line.split(b",", 1)[0].decode("utf-8")
            failures.append((runs.line(cursor + offset), visitor_id, outcome, why))
    next_cursor = cursor + rows
    upload_lines(
        ports.objects,
        JobKeys(job_id).results(batch["batchIndex"], cursor),
        rows_csv(failures, batch["batchIndex"]),
    )
    done = next_cursor >= batch["rows"]
    add_single_counts(ports, item, cursor=cursor, next_cursor=next_cursor, counts=counts, done=done)
    if refused and not done:
        rest = end_single_rest(ports, item, next_cursor, f"not sent to Target: the job stopped. {reason}")
        for name, value in rest.items():
            counts[name] = counts.get(name, 0) + value
        next_cursor, done = batch["rows"], True
    return {"cursor": next_cursor, "done": done, "waitSeconds": 0, "counts": counts}
