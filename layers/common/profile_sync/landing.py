"""Did it land? Read back a random sample of a job's succeeded rows and compare with what was sent.

Target answering `complete` means it took the rows, not that every profile shows them: Adobe warns
that up to 0.1% of a large batch may be lost, and updates can take a while to apply. After a job
ends, the check draws a sample of its succeeded rows, fetches each profile through Target's profile
fetch API and compares its attributes with the row's values:

- verified: every attribute the row gave a value shows that value;
- mismatched: the profile exists but an attribute is missing or holds another value;
- not_visible: Target has no such profile (not applied yet, or lost);
- unchecked: the profile could not be read (Target kept refusing or failing the call).

Updates take time to apply, so the workflow waits `landing_check_delay_seconds` before the first
read and reads what did not verify again, `landing_check_retries` more times, with the same wait.

What "what was sent" means: the batch file's values, URL-decoded (the file holds them encoded in
both input modes: Target decodes them; the fetch API answers decoded). Empty values are never
compared: Target ignores them, they never clear an attribute. When the job sent the same id more
than once (duplicate ids), any value sent for an attribute counts: batches may be applied in any
order. An attribute may show as `name` or `profile.name`.

The sample is drawn from the batch files and results (job_rows), streamed, with memory bound by the
sample size: the succeeded rows are counted from the results files first, then the chosen positions
are picked in one pass. Only batches whose listed rows and counts agree take part (in a v1 batch
that counted not-found rows without naming them, a "succeeded" row may be one of those).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

from profile_sync.adobe_target.errors import TargetAuthError, TargetError, TargetRejected, TargetRetryLater
from profile_sync.job_rows import JobFiles
from profile_sync.outcomes import SUCCEEDED

VERIFIED, MISMATCHED, NOT_VISIBLE, UNCHECKED = "verified", "mismatched", "not_visible", "unchecked"
OUTCOMES = (VERIFIED, MISMATCHED, NOT_VISIBLE, UNCHECKED)

# fetch(id_type, visitor id) -> the profile as the fetch API answers it, or None (no profile).
Fetch = Callable[[str, str], dict[str, Any] | None]


@dataclass
class SampledRow:
    id_type: str
    visitor_id: str  # decoded, as Target knows it
    batch_index: int
    line: int
    expected: dict[str, list[str]]  # attribute -> the values sent (any of them may show)
    outcome: str = ""  # "" until read
    reads: int = 0
    detail: str = ""  # attribute names and why, never values

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampledRow:
        return cls(**data)


@dataclass
class Sample:
    rows: list[SampledRow]
    eligible: int  # succeeded rows the sample was drawn from
    skipped_batches: list[int] = field(default_factory=list)  # counted rows without naming them

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [row.to_dict() for row in self.rows],
            "eligible": self.eligible,
            "skippedBatches": self.skipped_batches,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        return cls(
            [SampledRow.from_dict(r) for r in data["rows"]], data["eligible"], data.get("skippedBatches", [])
        )


def draw_sample(files: JobFiles, size: int, rng: random.Random | None = None) -> Sample:
    """Up to `size` distinct ids among the job's succeeded rows, each equally likely."""
    rng = rng or random.Random()
    eligible: list[tuple[Mapping[str, Any], int]] = []
    skipped: list[int] = []
    for batch in files.batches:
        succeeded = int((batch.get("counts") or {}).get(SUCCEEDED, 0))
        if not succeeded:
            continue
        if files.count_listed(batch).unlisted != succeeded:
            skipped.append(int(batch["batchIndex"]))  # Target counted rows it did not name
            continue
        eligible.append((batch, succeeded))
    total = sum(n for _, n in eligible)
    if size <= 0 or total == 0:
        return Sample([], total, skipped)
    positions = sorted(rng.sample(range(total), min(size, total)), reverse=True)
    picked: dict[tuple[str, str], SampledRow] = {}
    seen = 0
    for batch, succeeded in eligible:
        if not positions:
            break
        if positions[-1] >= seen + succeeded:
            seen += succeeded  # no chosen position in this batch: don't read it
            continue
        header, names = files.header(batch)
        id_type = header.split(",", 1)[0]
        for row in files.walk(batch):
            if row.outcome != SUCCEEDED:
                continue
            if positions and positions[-1] == seen:
                positions.pop()
                key = (id_type, unquote(row.encoded_id))
                # The same id chosen twice (duplicate ids): one read, every value it was sent.
                entry = picked.setdefault(key, SampledRow(id_type, key[1], row.batch_index, row.line, {}))
                _add_values(entry, row.values(names))
            seen += 1
            if not positions:
                break
    sample = Sample(list(picked.values()), total, skipped)
    if int(files.job.get("duplicateIds") or 0):
        _add_duplicates(files, sample)
    return sample


def _add_values(entry: SampledRow, values: dict[str, str]) -> None:
    for name, value in values.items():
        sent = entry.expected.setdefault(name, [])
        if value not in sent:
            sent.append(value)


def _add_duplicates(files: JobFiles, sample: Sample) -> None:
    """Every value the job sent for a sampled id, from its other rows too (applied in any order)."""
    wanted = {(row.id_type, row.visitor_id): row for row in sample.rows}
    for batch in files.batches:
        if not (batch.get("counts") or {}).get(SUCCEEDED):
            continue
        header, names = files.header(batch)
        id_type = header.split(",", 1)[0]
        for row in files.walk(batch):
            entry = wanted.get((id_type, unquote(row.encoded_id)))
            if entry is not None and row.outcome == SUCCEEDED:
                _add_values(entry, row.values(names))


def compare(expected: dict[str, list[str]], profile: dict[str, Any] | None) -> tuple[str, str]:
    """(outcome, detail) of one fetched profile against the values sent; detail names attributes only."""
    if profile is None:
        return NOT_VISIBLE, "Target has no profile for this id"
    shown = profile.get("profileAttributes") or {}
    missing, differ = [], []
    for name, values in sorted(expected.items()):
        attribute = shown.get(name, shown.get(f"profile.{name}"))
        if attribute is None:
            missing.append(name)
            continue
        value = attribute.get("value") if isinstance(attribute, dict) else attribute
        if value is None or str(value) not in values:
            differ.append(name)
    if not (missing or differ):
        return VERIFIED, ""
    parts = []
    if differ:
        parts.append(f"other value in {_names(differ)}")
    if missing:
        parts.append(f"missing {_names(missing)}")
    return MISMATCHED, "; ".join(parts)


def _names(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def read_round(rows: Iterable[SampledRow], fetch: Fetch) -> str | None:
    """Read every row not verified yet once; returns why reading stopped early (auth), or None.

    A call Target failed or refused leaves the row as it was (read again next round); an
    authentication failure stops the round: no other read would fare better.
    """
    for row in rows:
        if row.outcome == VERIFIED:
            continue
        try:
            profile = fetch(row.id_type, row.visitor_id)
        except TargetAuthError as exc:
            return f"Target refused authentication for the profile fetch (HTTP {exc.status or '?'})"
        except TargetRetryLater as exc:
            row.detail = f"the fetch did not get an answer ({_answer(exc)})"
            continue
        except TargetRejected as exc:
            row.outcome, row.detail = UNCHECKED, f"Target refused the fetch ({_answer(exc)})"
            continue
        except TargetError as exc:
            row.detail = f"the fetch failed ({_answer(exc)})"
            continue
        row.reads += 1
        row.outcome, row.detail = compare(row.expected, profile)
    return None


def _answer(exc: TargetError) -> str:
    return f"HTTP {exc.status}" if exc.status is not None else "no answer"


def unsettled(rows: Iterable[SampledRow]) -> int:
    """Rows a further round would read again."""
    return sum(1 for row in rows if row.outcome != VERIFIED)


def tally(sample: Sample, *, rounds: int, stopped: str | None = None) -> dict[str, Any]:
    """The check's figures for the job record, the report and the metrics (no ids, no values)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for row in sample.rows:
        counts[row.outcome if row.outcome in OUTCOMES else UNCHECKED] += 1
    sampled = len(sample.rows)
    # Counts only (whole numbers: the job record is a DynamoDB item); not_verified_share() derives.
    result: dict[str, Any] = {
        "sampled": sampled,
        "eligible": sample.eligible,
        "verified": counts[VERIFIED],
        "mismatched": counts[MISMATCHED],
        "notVisible": counts[NOT_VISIBLE],
        "unchecked": counts[UNCHECKED],
        "rounds": rounds,
    }
    if sample.skipped_batches:
        result["skippedBatches"] = len(sample.skipped_batches)
    if stopped:
        result["reason"] = stopped
    return result


def rows_report(sample: Sample) -> list[dict[str, Any]]:
    """The sampled rows that did not verify, by source line: for the job's report (no values)."""
    return [
        {
            "line": row.line,
            "batch": row.batch_index,
            "outcome": row.outcome or UNCHECKED,
            "detail": row.detail,
        }
        for row in sorted(sample.rows, key=lambda r: r.line)
        if row.outcome != VERIFIED
    ]


def not_verified_share(result: dict[str, Any]) -> float:
    """The share of the sample that did not verify (0 for an empty sample)."""
    sampled = int(result.get("sampled") or 0)
    return (sampled - int(result.get("verified") or 0)) / sampled if sampled else 0.0


def alert_needed(result: dict[str, Any], share: float) -> bool:
    """True when the share of the sample that did not verify is above the setting."""
    return not_verified_share(result) > share


def alert_subject(job: Mapping[str, Any], result: dict[str, Any]) -> str:
    return (
        f"target-profile-sync: job {job['jobId']}: {not_verified_share(result):.0%} of the sampled "
        "profiles did not verify"
    )


def alert_message(job: Mapping[str, Any], result: dict[str, Any], share: float) -> str:
    """What the sample showed and what a person should do next (counts and commands, no ids)."""
    job_id = job["jobId"]
    lines = [
        f"Job {job_id} ({job.get('sourceKey', '?')}) ended {job.get('status', '?')}, and Target showed the "
        f"values sent for {result['verified']} of {result['sampled']} sampled profiles after "
        f"{result['rounds']} read(s): mismatched {result['mismatched']}, not visible {result['notVisible']}, "
        f"unchecked {result['unchecked']}. {not_verified_share(result):.0%} did not verify (a notice goes "
        f"out above {share:.0%})."
        + (f" The check stopped: {result['reason']}." if result.get("reason") else ""),
        "",
        "What to do next:",
        f"- Which lines: `profile-sync report {job_id}` (summary.json's landingRows: source line, outcome, "
        "attribute names).",
    ]
    if result["mismatched"] or result["notVisible"]:
        lines.append(
            "- Mismatched or not visible: Target reported these rows successful and does not show them "
            "(lost, or not applied yet: Adobe says usually within an hour). Look at a few of those "
            "profiles later; if they still differ, send the file again with delta sync off (drop it "
            f"under incoming/{job.get('clientCode', '<client>')}/delta=off/): delta sync counts these "
            "rows as confirmed and would not send them."
        )
    if result["unchecked"]:
        lines.append(
            "- Unchecked: Target refused or failed the profile fetch, so these rows are unknown, not "
            "lost: check the token's access to the profile API and Target's status."
        )
    if int(job.get("failed") or 0) or int(job.get("pending") or 0):
        lines.append(
            f"- The job's failed and pending rows (not part of the check): `profile-sync redrive {job_id}`."
        )
    return "\n".join(lines)
