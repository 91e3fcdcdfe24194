"""A finished job's sent rows with their outcomes, streamed from its batch files and results files.

The batch files hold every accepted row as it was sent (URL-encoded, after a `batch=` header); the
results files list only the rows that did not succeed, by source line, in batch row order (one
file per batch, or one per chunk of a single-update batch). Walking both side by side with the
batch's line runs gives each row its outcome without holding either file: memory stays flat
however large the job. The re-drive file builder and the landing check read jobs through here.

Rows Target counted without naming them (v1's not-found rows, counters that cover fewer rows
than the batch) are in no results file: they walk as "succeeded". `BatchWalk.unnamed` says how many
rows of a batch that is, once its counts are compared with what its results file listed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote

from profile_sync.model import BATCH_ROW_OUTCOMES, JobKeys
from profile_sync.outcomes import FAILED, NOT_FOUND, PENDING, SUCCEEDED, LineRuns

RESULTS_NAME = re.compile(r"batch-(\d+)(?:-(\d+))?\.csv$")
UNNAMED_OUTCOMES = (FAILED, NOT_FOUND, PENDING)


class Objects(Protocol):
    def open(self, key: str) -> AbstractContextManager[BinaryIO]: ...
    def get_json(self, key: str) -> object: ...
    def list_keys(self, prefix: str) -> list[str]: ...


class JobFilesError(Exception):
    """The job's files don't agree with each other (a results row that is no row of its batch)."""


@dataclass(frozen=True)
class SentRow:
    batch_index: int
    row_index: int  # 0-based, in the batch file
    line: int  # the source file's line
    raw: bytes  # the row as sent: URL-encoded fields, no newline
    outcome: str  # succeeded (or counted without a name), failed, not_found, pending
    reason: str

    @property
    def encoded_id(self) -> str:
        return self.raw.split(b",", 1)[0].decode("utf-8")

    def values(self, names: list[str]) -> dict[str, str]:
        """Decoded attribute values by decoded name; empty values left out (Target ignores them)."""
        fields = self.raw.decode("utf-8").split(",")[1:]
        return {name: unquote(value) for name, value in zip(names, fields, strict=False) if value}


@dataclass
class BatchWalk:
    """What walking one batch found: rows listed per outcome, rows not listed."""

    record: Mapping[str, Any]
    listed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BATCH_ROW_OUTCOMES, 0))
    unlisted: int = 0

    @property
    def unnamed(self) -> dict[str, int]:
        """Rows of each non-success outcome that Target counted but never named (not listable)."""
        counts = self.record.get("counts") or {}
        return {o: max(0, int(counts.get(o, 0)) - self.listed[o]) for o in UNNAMED_OUTCOMES}


class JobFiles:
    """One job's manifest, batch records and results keys; walks its batches' rows."""

    def __init__(
        self, objects: Objects, job: Mapping[str, Any], batches: Sequence[Mapping[str, Any]]
    ) -> None:
        self.objects = objects
        self.job = job
        self.batches = sorted(batches, key=lambda b: int(b["batchIndex"]))
        keys = JobKeys(job["jobId"])
        manifest = objects.get_json(job.get("manifestKey") or keys.manifest)
        if not isinstance(manifest, dict):
            raise JobFilesError(f"job {job['jobId']}: its manifest is not a JSON object")
        self._runs = {int(b["batchIndex"]): b["lineRuns"] for b in manifest.get("batches", [])}
        self._results: dict[int, list[tuple[int, str]]] = {}
        for key in objects.list_keys(keys.results_prefix):
            match = RESULTS_NAME.search(key)
            if match:
                chunk = int(match.group(2) or 0)
                self._results.setdefault(int(match.group(1)), []).append((chunk, key))

    def header(self, batch: Mapping[str, Any]) -> tuple[str, list[str]]:
        """The batch file's header as sent (without `batch=`) and its decoded attribute names."""
        with self.objects.open(batch["key"]) as body:
            first = body.readline(1 << 20).rstrip(b"\r\n").decode("utf-8")
        header = first.removeprefix("batch=")
        return header, [unquote(name) for name in header.split(",")[1:]]

    def listed(self, batch: Mapping[str, Any]) -> Iterator[tuple[int, str, str]]:
        """(line, outcome, reason) of the batch's rows its results files list, in row order."""
        for _, key in sorted(self._results.get(int(batch["batchIndex"]), [])):
            with self.objects.open(key) as body:
                text = io.TextIOWrapper(body, encoding="utf-8", newline="")
                for row in csv.reader(text):
                    if row and row[0].isdigit():  # the report's header row has none
                        yield int(row[0]), row[2], row[3]

    def walk(self, batch: Mapping[str, Any], into: BatchWalk | None = None) -> Iterator[SentRow]:
        """Every row of the batch with its outcome; `into` collects the counts as it goes."""
        walk = into if into is not None else BatchWalk(batch)
        index = int(batch["batchIndex"])
        runs = self._runs.get(index)
        if runs is None:
            raise JobFilesError(f"job {self.job['jobId']}: batch {index} is not in the manifest")
        line_runs = LineRuns([(int(start), int(line)) for start, line in runs])
        listed = self.listed(batch)
        upcoming = next(listed, None)
        with self.objects.open(batch["key"]) as body:
            lines = _lines(body)
            next(lines, None)  # the batch= header
            for row_index, raw in enumerate(lines):
                line = line_runs.line(row_index)
                if upcoming is not None and upcoming[0] < line:
                    raise JobFilesError(
                        f"job {self.job['jobId']}: batch {index}'s results list line {upcoming[0]}, "
                        "which is no row of the batch"
                    )
                if upcoming is not None and upcoming[0] == line:
                    outcome, reason = upcoming[1], upcoming[2]
                    walk.listed[outcome] = walk.listed.get(outcome, 0) + 1
                    upcoming = next(listed, None)
                else:
                    outcome, reason = SUCCEEDED, ""
                    walk.unlisted += 1
                yield SentRow(index, row_index, line, raw, outcome, reason)
        if upcoming is not None:
            raise JobFilesError(
                f"job {self.job['jobId']}: batch {index}'s results list line {upcoming[0]}, "
                "which is no row of the batch"
            )

    def count_listed(self, batch: Mapping[str, Any]) -> BatchWalk:
        """The batch's listed rows per outcome and its unlisted rows, from the results files alone."""
        walk = BatchWalk(batch)
        for _, outcome, _reason in self.listed(batch):
            walk.listed[outcome] = walk.listed.get(outcome, 0) + 1
        walk.unlisted = int(batch["rows"]) - sum(walk.listed.values())
        return walk


def _lines(body: BinaryIO) -> Iterator[bytes]:
    """The lines of a streamed object without their line breaks, never holding it whole."""
    pending = b""
    while chunk := body.read(1 << 20):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r")
    if pending:
        yield pending.rstrip(b"\r")
