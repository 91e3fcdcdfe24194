"""The re-drive file: exactly the failed and/or pending rows of a finished job, as they were sent."""

from __future__ import annotations

import io
import tempfile
import tracemalloc
from pathlib import Path

import pytest

from profile_sync.adobe_target.responses import BatchStatus
from profile_sync.ingest import parse_drop_key
from profile_sync.job_rows import JobFiles, JobFilesError
from profile_sync.model import BatchEnd
from profile_sync.outcomes import FAILED, NOT_FOUND, PENDING
from profile_sync.redrive import (
    RedriveRefused,
    auto_redrive_pending,
    build_redrive_file,
    parse_only,
    redrive_key,
)
from profile_sync.settings import Settings
from profile_sync.validate import validate_and_split
from tests.unit.finished_jobs import finished_job

SOURCE = (
    "thirdPartyId,tier,city\n"
    "CRM-1,gold,Berlin\n"  # line 2
    "CRM-2,silver,M%C3%BCnchen\n"  # 3
    "bad id,x,y\n"  # 4: rejected (raw space), never sent
    "CRM-3,gold,\n"  # 5
    "CRM-4,,Paris\n"  # 6
    "CRM-5,bronze,Rome\n"  # 7
    "CRM-6,gold,Oslo\n"  # 8
    "CRM-7,gold,Lima\n"  # 9
    "CRM-8,gold,Kyiv\n"  # 10
    "CRM-9,gold,Nice\n"  # 11
    "CRM-10,gold,Rio\n"  # 12
)
# Batch 1 (lines 2, 3, 5): CRM-2 failed; batch 2 (6-8) stuck; batch 3 (9-11) vanished; batch 4 (12) fine.
ENDS = {
    1: (BatchEnd.COMPLETE, BatchStatus("complete", profiles=[("CRM-2", "failed")])),
    2: (BatchEnd.STUCK, BatchStatus("stuck")),
    3: (BatchEnd.VANISHED, None),
}


def build(only, **kwargs):
    objects, files = finished_job(SOURCE, ENDS, **kwargs)
    out = io.BytesIO()
    result = build_redrive_file(files, parse_only(only), out)
    return objects, out.getvalue().decode(), result


def test_failed_rows_are_taken_from_the_batch_files_as_sent():
    objects, text, result = build(["failed"])
    assert text.splitlines() == [
        "thirdPartyId,tier,city",
        "CRM-2,silver,M%C3%BCnchen",
        "CRM-4,,Paris",
        "CRM-5,bronze,Rome",
        "CRM-6,gold,Oslo",
    ]
    assert text.endswith("Oslo\n")
    assert (result.rows, result.by_outcome[FAILED], result.by_outcome[PENDING], result.batches) == (
        4,
        4,
        0,
        2,
    )
    assert result.api_version == "v2" and not result.notes
    # Batches with nothing chosen are not read at all (only their results were listed).
    assert not any(key.endswith(("batch-00003.txt", "batch-00004.txt")) for key in objects.opened)


def test_pending_rows_and_the_default_of_both():
    _, pending, result = build(["pending"])
    assert pending.splitlines()[1:] == ["CRM-7,gold,Lima", "CRM-8,gold,Kyiv", "CRM-9,gold,Nice"]
    assert result.by_outcome[PENDING] == 3
    _, both, result = build(None)
    assert [line.split(",")[0] for line in both.splitlines()[1:]] == [
        "CRM-2",
        "CRM-4",
        "CRM-5",
        "CRM-6",
        "CRM-7",
        "CRM-8",
        "CRM-9",
    ]
    assert result.rows == 7


def test_the_file_passes_the_ingest_again_unchanged_in_encoded_mode(tmp_path):
    _, text, result = build(None)
    again = validate_and_split(io.BytesIO(text.encode()), tmp_path, Settings(input_mode="encoded"))
    assert (again.accepted, again.rejected, again.skipped) == (result.rows, 0, 0)
    sent = b"".join(Path(b.path).read_bytes().split(b"\n", 1)[1] for b in again.batches)
    assert sent.decode() == text.split("\n", 1)[1]


def test_raw_mode_jobs_are_re_driven_encoded(tmp_path):
    source = "thirdPartyId,note\nCRM-1,a b&c\nCRM-2,ü,x\n"
    _, files = finished_job(
        source.replace(",x\n", "\n"), {1: (BatchEnd.STUCK, BatchStatus("stuck"))}, input_mode="raw"
    )
    out = io.BytesIO()
    build_redrive_file(files, ["failed"], out)
    assert out.getvalue() == b"thirdPartyId,note\nCRM-1,a%20b%26c\nCRM-2,%C3%BC\n"


def test_v1_not_found_rows_resend_whole_batches_through_v2():
    ends = {1: (BatchEnd.COMPLETE, BatchStatus("complete", successful=2, not_found=1, failed=0))}
    _, files = finished_job(SOURCE, ends, api="v1")
    out = io.BytesIO()
    result = build_redrive_file(files, ["not_found"], out)
    assert out.getvalue().decode().splitlines()[1:] == [
        "CRM-1,gold,Berlin",
        "CRM-2,silver,M%C3%BCnchen",
        "CRM-3,gold,",
    ]
    assert result.api_version == "v2"
    assert (result.by_outcome[NOT_FOUND], result.resent_succeeded, result.rows) == (1, 2, 3)
    assert "v1 names no not-found rows" in result.notes[0] and "through v2" in result.notes[0]


def test_not_found_without_v1_counts_says_so():
    _, text, result = build(["not_found"])
    assert (result.rows, text) == (0, "")
    assert result.notes == ["no batch of this job counted not-found rows (only v1 batches do)"]


def test_v1_batches_with_a_failed_count_keep_failed_rows_apart():
    # Target counted 1 failed and 1 not found without naming them: failed can't be listed, not_found can.
    ends = {1: (BatchEnd.COMPLETE, BatchStatus("complete", successful=1, not_found=1, failed=1))}
    _, files = finished_job(SOURCE, ends, api="v1")
    out = io.BytesIO()
    result = build_redrive_file(files, ["failed"], out)
    assert result.unnamed[FAILED] == 1
    assert any("counted by Target without being named" in note for note in result.notes)


def test_a_re_drive_of_a_re_drive(tmp_path):
    _, first, _ = build(None)
    # The re-drive job: its batch 1 (CRM-2, CRM-4, CRM-5) vanished again, the rest landed.
    _, files = finished_job(first, {1: (BatchEnd.VANISHED, None)}, job_id="20261202T020000Z-child0000001")
    files.job["sourceKey"] = redrive_key(
        {"clientCode": "demo", "jobId": "20261202T010000Z-parent000001", "sourceKey": "incoming/demo/v.csv"},
        ("failed", "pending"),
        "v2",
    )
    out = io.BytesIO()
    result = build_redrive_file(files, ["pending"], out)
    assert out.getvalue().decode().splitlines()[1:] == [
        "CRM-2,silver,M%C3%BCnchen",
        "CRM-4,,Paris",
        "CRM-5,bronze,Rome",
    ]
    assert result.rows == 3
    key = redrive_key(files.job, ("pending",), "v2")
    assert key == (
        "incoming/demo/redrive=20261202T020000Z-child0000001/api=v2/mode=encoded/v.redrive-pending.csv"
    )


def test_redrive_key_names_the_parent_and_the_choice():
    job = {"clientCode": "acme", "jobId": "J1", "sourceKey": "incoming/acme/api=v1/Export 2026.CSV.gz"}
    assert redrive_key(job, ("failed", "pending"), "v1") == (
        "incoming/acme/redrive=J1/api=v1/mode=encoded/Export 2026.redrive-failed-pending.csv"
    )
    # A delta sync job's re-drive is one too (its rows diffed, the rows it confirms kept), and the
    # key parses as the ingest reads it.
    delta = {**job, "delta": "on", "sourceKey": "incoming/acme/delta=on/x.redrive-pending.csv"}
    key = redrive_key(delta, ("pending",), "v2")
    assert key == "incoming/acme/redrive=J1/api=v2/mode=encoded/delta=on/x.redrive-pending.csv"
    options = parse_drop_key(key, Settings())
    assert (options.delta, options.parent_job_id, options.input_mode) == ("on", "J1", "encoded")


@pytest.mark.parametrize("status", ["RUNNING", "QUEUED", "RECEIVED", "REJECTED"])
def test_jobs_that_have_not_ended_or_sent_nothing_are_refused(status):
    _, files = finished_job(SOURCE, ENDS, status=status)
    with pytest.raises(RedriveRefused, match=files.job["jobId"]):
        build_redrive_file(files, ["failed"], io.BytesIO())


def test_only_takes_the_three_outcomes():
    assert parse_only(["pending,failed", "failed"]) == ("pending", "failed")
    assert parse_only(["not-found"]) == ("not_found",)
    with pytest.raises(ValueError, match="succeeded"):
        parse_only(["succeeded"])


def test_results_that_name_a_line_of_no_row_are_an_error():
    objects, files = finished_job(SOURCE, ENDS)
    key = "jobs/20261202T010000Z-parent000001/results/batch-00001.csv"
    objects.data[key] = b"4,bad id,failed,why,1\n"  # line 4 was rejected: no row of batch 1
    files = JobFiles(objects, files.job, files.batches)
    with pytest.raises(JobFilesError, match="line 4"):
        build_redrive_file(files, ["failed"], io.BytesIO())


def _redrive_peak(rows: int) -> int:
    source = "thirdPartyId,a\n" + "".join(f"CRM-{i},{'v' * 400}\n" for i in range(rows))
    _, files = finished_job(source, {1: (BatchEnd.STUCK, BatchStatus("stuck"))}, batch_max_rows=rows)
    with tempfile.TemporaryFile() as out:
        tracemalloc.start()
        result = build_redrive_file(files, ["failed"], out)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert result.rows == rows
    return peak


def test_memory_stays_flat_however_many_rows():
    # Three times the rows (the batch file and its results held by the in-memory store, not traced
    # as new): the walk holds about one read chunk of each, whatever their size.
    small, large = _redrive_peak(8_000), _redrive_peak(24_000)
    assert large < small * 1.2 and large < 8 * 1024 * 1024, (small, large)


# ------------------------------------------------------------- the automatic re-drive (finalize)
class UploadingObjects:
    """MemoryObjects with S3's upload_file; `fail_uploads`: PutObject refused."""

    def __init__(self, objects, fail_uploads: bool = False) -> None:
        self.inner, self.fail_uploads = objects, fail_uploads

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        if self.fail_uploads:
            raise PermissionError("AccessDenied")
        self.inner.data[key] = Path(path).read_bytes()


class JobRecords:
    """The job record's conditional writes, as DynamoJobStore does them (an empty value = absent)."""

    def __init__(self, job: dict) -> None:
        self.job = dict(job)

    def update_job(self, job_id: str, changes: dict, *, expect: dict | None = None) -> bool:
        if any((self.job.get(k) or "") != v for k, v in (expect or {}).items()):
            return False
        self.job.update(changes)
        return True


def auto_job(**fields):
    objects, files = finished_job(SOURCE, ENDS)
    job = {**files.job, "pending": 3, "sourceBucket": "drop", **fields}
    return UploadingObjects(objects), JobRecords(job), job, files.batches


def test_the_automatic_re_drive_drops_the_pending_rows_once():
    objects, records, job, batches = auto_job()
    done = auto_redrive_pending(objects, records, job, batches)
    key = f"incoming/demo/redrive={job['jobId']}/api=v2/mode=encoded/visitors.redrive-pending.csv"
    assert done == {"key": key, "rows": 3, "batches": 1, "notes": []}
    assert (
        objects.inner.data[key]
        == b"thirdPartyId,tier,city\nCRM-7,gold,Lima\nCRM-8,gold,Kyiv\nCRM-9,gold,Nice\n"
    )
    assert records.job["autoRedriveKey"] == key
    # A retried finalize (its record read before the first try wrote the key): nothing dropped again.
    del objects.inner.data[key]
    again = auto_redrive_pending(objects, records, job, batches)
    assert again == {"key": key, "note": "dropped by an earlier try of this step"}
    assert key not in objects.inner.data
    # ... and one that read the key says so too.
    assert auto_redrive_pending(objects, records, records.job, batches)["key"] == key


@pytest.mark.parametrize(
    "fields",
    [
        {"autoRedriveOf": "20261202T000000Z-grandparent1"},  # itself an automatic re-drive: no loop
        {"pending": 0},
        {"status": "FAILED"},  # fix what failed first
        {"status": "COMPLETE"},
    ],
)
def test_no_automatic_re_drive_of_a_re_drive_a_failed_job_or_one_without_pending_rows(fields):
    objects, records, job, batches = auto_job(**fields)
    assert auto_redrive_pending(objects, records, job, batches) is None
    assert not any(key.startswith("incoming/") for key in objects.inner.data)
    assert "autoRedriveKey" not in records.job


def test_a_manual_re_drive_job_may_re_drive_its_pending_rows_once_automatically():
    objects, records, job, batches = auto_job(parentJobId="20261202T000000Z-byhand000001")
    assert auto_redrive_pending(objects, records, job, batches)["rows"] == 3


def test_a_refused_upload_is_reported_with_what_to_do_and_leaves_the_key_free():
    objects, records, job, batches = auto_job()
    objects.fail_uploads = True
    done = auto_redrive_pending(objects, records, job, batches)
    assert done["error"] == "PermissionError: AccessDenied"
    assert done["next"] == f"re-drive by hand: profile-sync redrive {job['jobId']} --only pending"
    assert not records.job["autoRedriveKey"]
    objects.fail_uploads = False
    assert auto_redrive_pending(objects, records, records.job, batches)["rows"] == 3  # a later try drops it


def test_pending_rows_target_never_named_give_no_file():
    objects, files = finished_job(SOURCE)
    files.batches[2]["counts"] = {"succeeded": 2, "pending": 1}  # Target counted one, named none
    job = {**files.job, "pending": 1}
    done = auto_redrive_pending(UploadingObjects(objects), JobRecords(job), job, files.batches)
    assert done["rows"] == 0 and "without being named" in done["note"]
