"""Delta sync's domain: row hashes, the snapshot, the streaming diff, rebatching, merging confirmed rows."""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from profile_sync.delta import (
    Pointer,
    RowHasher,
    confirmed_bits,
    diff_batches,
    partition_of,
    rebatch,
    update_snapshot,
)
from profile_sync.delta.snapshot import read_records
from profile_sync.settings import Settings
from profile_sync.validate import BatchInfo, validate_and_split


# ------------------------------------------------------------------------------------- doubles
class MemObjects:
    """S3 as the snapshot sees it: a missing key is FileNotFoundError; a body is read once."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.opened: list[str] = []

    def open(self, key: str) -> io.BytesIO:
        if key not in self.data:
            raise FileNotFoundError(key)
        self.opened.append(key)
        return io.BytesIO(self.data[key])

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        self.data[key] = Path(path).read_bytes()

    refuse_deletes = False

    def delete_keys(self, keys: list[str]) -> None:
        if self.refuse_deletes:
            raise OSError("S3 refused to delete 1 object(s): AccessDenied")
        for key in keys:
            self.data.pop(key, None)  # a missing key is no error, as in S3


class MemPointers:
    """A conditional put like DynamoDB's: refused unless the stored version is the expected one."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict] = {}
        self.before_put: Callable[[], None] | None = None
        self.puts = 0

    def get(self, client_code: str, id_type: str) -> Pointer | None:
        item = self.items.get((client_code, id_type))
        return Pointer.from_dict(item) if item else None

    def put(self, client_code: str, id_type: str, pointer: Pointer, *, expect_version: int) -> bool:
        hook, self.before_put = self.before_put, None
        if hook is not None:
            hook()
        self.puts += 1
        stored = self.items.get((client_code, id_type))
        if (stored["version"] if stored else 0) != expect_version:
            return False
        self.items[(client_code, id_type)] = pointer.to_dict()
        return True


# ------------------------------------------------------------------------------------- helpers
HEADER = "thirdPartyId,tier,city,score"


def csv_of(rows: dict[str, tuple[str, ...]], header: str = HEADER) -> bytes:
    return ("\n".join([header, *(",".join((i, *v)) for i, v in rows.items())]) + "\n").encode()


def split(data: bytes, out: Path, **limits: int) -> list[BatchInfo]:
    result = validate_and_split(io.BytesIO(data), out, Settings(**limits))
    assert result.file_error is None
    return result.batches


class Client:
    """One client's snapshot and the jobs run against it (ingest's diff, then the update)."""

    def __init__(self, tmp: Path, partitions: int = 4) -> None:
        self.tmp, self.partitions = tmp, partitions
        self.objects, self.pointers = MemObjects(), MemPointers()
        self.jobs = 0

    def diff(self, data: bytes, **limits: int):
        self.jobs += 1
        work = self.tmp / f"job{self.jobs}"
        batches = split(data, work / "engine", **limits)
        result = diff_batches(
            [Path(b.path) for b in batches],
            pointer=self.pointers.get("acme", "thirdPartyId"),
            objects=self.objects,
            workdir=work / "delta",
            partitions=self.partitions,
        )
        sent = rebatch(
            batches,
            result.changed_seqs,
            out_dir=work / "sent",
            max_rows=limits.get("batch_max_rows", 500_000),
            max_bytes=limits.get("batch_max_bytes", 50_000_000),
        )
        keys = {}
        for partition, path in result.candidates.items():
            keys[partition] = f"jobs/job{self.jobs}/delta/candidates-{partition:04d}.gz"
            self.objects.upload_file(path, keys[partition], "application/gzip")
        return Job(f"job{self.jobs}", work, result, sent, keys)

    def update(
        self,
        job: Job,
        not_confirmed: Callable[[str], bool] = lambda ident: False,
        now: str = "",
        grace_seconds: int = 86400,
    ):
        """Target confirmed every sent row except those ``not_confirmed`` names."""
        outcome = []
        for batch in job.sent:
            ids = sent_ids([batch])
            outcome.append((batch.rows, [i for i, ident in enumerate(ids) if not_confirmed(ident)]))
        confirmed = confirmed_bits(job.diff.unchanged_bits, job.diff.rows, outcome)
        return update_snapshot(
            client_code="acme",
            id_type=job.diff.id_type,
            job_id=job.job_id,
            base_version=job.diff.base_version,
            partitions=job.diff.partitions,
            names=job.diff.names,
            candidates=job.candidates,
            confirmed=confirmed,
            objects=self.objects,
            pointers=self.pointers,
            workdir=job.work / "update",
            now=now,
            grace_seconds=grace_seconds,
        )

    def run(self, data: bytes, **kwargs):
        job = self.diff(data)
        return job, self.update(job, **kwargs)

    def snapshot(self) -> dict[str, tuple[bytes, ...]]:
        pointer = self.pointers.get("acme", "thirdPartyId")
        records: dict[str, tuple[bytes, ...]] = {}
        for partition, key in sorted(pointer.keys.items()) if pointer else ():
            _, rows = read_records(io.BytesIO(self.objects.data[key]))
            ids = []
            for r in rows:
                assert partition_of(r[0], pointer.partitions) == partition
                records[r[0].decode()] = tuple(r[1:])
                ids.append(r[0])
            assert ids == sorted(ids)  # each partition file sorted by id
        return records


class Job:
    def __init__(self, job_id, work, diff, sent, candidates) -> None:
        self.job_id, self.work, self.diff, self.sent, self.candidates = job_id, work, diff, sent, candidates

    @property
    def sent_ids(self) -> list[str]:
        return sent_ids(self.sent)


def sent_ids(batches: list[BatchInfo]) -> list[str]:
    ids = []
    for batch in batches:
        lines = Path(batch.path).read_bytes().splitlines()
        ids += [line.split(b",", 1)[0].decode() for line in lines[1:]]
    return ids


def people(n: int, seed: int = 1) -> dict[str, tuple[str, ...]]:
    rnd = random.Random(seed)
    return {
        f"CRM-{i:06d}": (rnd.choice(["gold", "silver"]), rnd.choice(["Berlin", "M%C3%BCnchen"]), str(i % 97))
        for i in range(n)
    }


# ------------------------------------------------------------------------------------- row hashes
def test_row_hash_ignores_column_order_and_empty_values_and_sees_every_value():
    a = RowHasher([b"tier", b"city"])
    b = RowHasher([b"city", b"tier"])
    assert a.row_hash([b"gold", b"Berlin"]) == b.row_hash([b"Berlin", b"gold"])
    assert a.row_hash([b"gold", b""]) == a.row_hash([b"gold"]) == RowHasher([b"tier"]).row_hash([b"gold"])
    assert a.row_hash([b"gold", b"Berlin"]) != a.row_hash([b"gold", b"Bonn"])
    # The name is part of the hash: the same value under another attribute is another row.
    assert RowHasher([b"tier"]).row_hash([b"gold"]) != RowHasher([b"level"]).row_hash([b"gold"])
    # Values are hashed as sent: another spelling of the same text is another row (sent again).
    assert a.row_hash([b"M%C3%BCnchen", b""]) != a.row_hash([b"M%c3%bcnchen", b""])
    assert len(a.row_hash([b"x"])) == 16
    assert a.value_hashes([b"gold"]) == [a.value_hashes([b"gold", b"x"])[0], b""]


# ------------------------------------------------------------------------------------- diff + update
def test_first_run_sends_everything_and_the_same_file_again_sends_nothing(tmp_path):
    client = Client(tmp_path)
    data = csv_of(people(500))
    job, update = client.run(data)
    assert job.diff.unchanged == 0 and len(job.sent_ids) == 500
    assert update.version == 1 and update.confirmed == 500 and update.attempts == 1
    assert len(client.snapshot()) == 500

    again = client.diff(data)
    assert again.diff.rows == 500 and again.diff.unchanged == 500
    assert again.sent == [] and again.candidates == {}
    assert client.update(again).skipped == "no confirmed rows"
    assert client.pointers.get("acme", "thirdPartyId").version == 1


def test_only_changed_rows_are_sent_even_with_the_columns_reordered(tmp_path):
    client = Client(tmp_path)
    rows = people(1000)
    client.run(csv_of(rows))
    changed = dict(rows)
    for ident in list(rows)[::50]:  # 2%
        tier, city, score = rows[ident]
        changed[ident] = (tier, city, score + "1")
    # Same values, columns in another order: still unchanged.
    reordered = {i: (v[2], v[0], v[1]) for i, v in changed.items()}
    job = client.diff(csv_of(reordered, "thirdPartyId,score,tier,city"))
    assert job.diff.unchanged == 980
    assert sorted(job.sent_ids) == sorted(list(rows)[::50])


def test_an_emptied_value_is_no_change_and_the_snapshot_keeps_the_value_target_keeps(tmp_path):
    client = Client(tmp_path)
    client.run(csv_of({"A": ("gold", "Berlin", "1"), "B": ("gold", "Berlin", "1")}))
    # A: city emptied only (Target ignores an empty value): unchanged, not sent.
    # B: city emptied and score changed: sent; Target applies the score and keeps the city.
    job, _ = client.run(csv_of({"A": ("gold", "", "1"), "B": ("gold", "", "2")}))
    assert job.sent_ids == ["B"] and job.diff.unchanged == 1
    # The old city is still what Target holds: sending it again is no change for either id.
    job = client.diff(csv_of({"A": ("gold", "Berlin", "1"), "B": ("gold", "Berlin", "2")}))
    assert job.sent_ids == []
    # A column missing from the file is the same: Target keeps its values.
    job = client.diff(csv_of({"A": ("gold",), "B": ("gold", "Bonn")}, "thirdPartyId,tier,city"))
    assert job.sent_ids == ["B"]
    # A value where the snapshot holds none (a new attribute) is a change.
    job = client.diff(csv_of({"A": ("gold", "Berlin", "1", "x")}, HEADER + ",newAttr"))
    assert job.sent_ids == ["A"]


def test_rows_target_did_not_confirm_keep_the_old_hash_and_are_sent_again(tmp_path):
    client = Client(tmp_path)
    rows = people(200)
    client.run(csv_of(rows))
    changed = {i: (v[0], v[1], "new") for i, v in rows.items()}
    lost = {"CRM-000003", "CRM-000150"}
    _, update = client.run(csv_of(changed), not_confirmed=lambda ident: ident in lost)
    assert update.confirmed == 198
    assert sorted(client.diff(csv_of(changed)).sent_ids) == sorted(lost)


def test_a_batch_with_no_confirmed_row_changes_nothing_in_the_snapshot(tmp_path):
    client = Client(tmp_path)
    client.run(csv_of(people(100)))
    job = client.diff(csv_of({i: ("bronze", *v[1:]) for i, v in people(100).items()}))
    confirmed = confirmed_bits(job.diff.unchanged_bits, job.diff.rows, [(b.rows, None) for b in job.sent])
    assert not any(confirmed)
    result = client.update(job, not_confirmed=lambda ident: True)
    assert result.skipped == "no confirmed rows" and result.version == 1


def test_confirmed_bits_map_sent_rows_back_to_file_rows():
    # 6 rows, rows 1 and 4 unchanged: sent rows are 0, 2, 3, 5 in two batches of 2.
    unchanged = bytearray([0b010010])
    bits = confirmed_bits(unchanged, 6, [(2, [1]), (2, [])])  # batch 1's second row (seq 2) failed
    assert [s for s in range(6) if bits[0] >> s & 1] == [0, 3, 5]
    assert not any(confirmed_bits(unchanged, 6, [(2, None), (2, None)]))


def test_a_duplicate_id_with_two_different_rows_ends_unknown_and_is_sent_again(tmp_path):
    client = Client(tmp_path)
    data = b"thirdPartyId,tier\nA,gold\nA,silver\nB,gold\nB,gold\n"
    _, update = client.run(data)
    assert update.unknown == 1
    snap = client.snapshot()
    assert snap["A"][0] == b"-" and snap["B"][0] != b"-"
    # A: which row Target applied last is not known: sent again. B: both rows alike, known.
    assert client.diff(b"thirdPartyId,tier\nA,gold\nB,gold\n").sent_ids == ["A"]


def test_a_retried_update_is_not_applied_twice(tmp_path):
    client = Client(tmp_path)
    job, first = client.run(csv_of(people(50)))
    again = client.update(job)
    assert again.skipped == "already merged" and again.version == first.version == 1


# ------------------------------------------------------------------------------------- concurrency
def test_two_jobs_racing_on_the_snapshot_keep_both_jobs_updates(tmp_path):
    client = Client(tmp_path)
    rows = people(300)
    client.run(csv_of(rows))
    ids = list(rows)
    a_rows = {i: ("a-tier", *rows[i][1:]) for i in ids[:100]}
    b_rows = {i: ("b-tier", *rows[i][1:]) for i in ids[100:200]}
    job_a, job_b = client.diff(csv_of(a_rows)), client.diff(csv_of(b_rows))
    assert job_a.diff.base_version == job_b.diff.base_version == 1
    results = {}
    # Job B reads version 1, merges, and just before its conditional write job A merges and
    # writes version 2: B's write is refused and B merges again on version 2.
    client.pointers.before_put = lambda: results.setdefault("a", client.update(job_a))
    results["b"] = client.update(job_b)
    assert results["a"].version == 2 and results["a"].attempts == 1
    assert results["b"].version == 3 and results["b"].attempts == 2
    assert set(client.pointers.get("acme", "thirdPartyId").applied) >= {job_a.job_id, job_b.job_id}
    # Neither job's rows are lost: both files are now unchanged, and the untouched ids too.
    assert client.diff(csv_of(a_rows)).sent_ids == []
    assert client.diff(csv_of(b_rows)).sent_ids == []
    assert client.diff(csv_of({i: rows[i] for i in ids[200:]})).sent_ids == []


def test_two_jobs_changing_one_id_leave_it_unknown(tmp_path):
    client = Client(tmp_path)
    client.run(b"thirdPartyId,tier\nA,gold\nB,gold\n")
    job_a = client.diff(b"thirdPartyId,tier\nA,silver\n")
    job_b = client.diff(b"thirdPartyId,tier\nA,bronze\nB,silver\n")
    client.update(job_a)
    result = client.update(job_b)  # A was written after B's diff: Target's order is unknown
    assert result.unknown == 1
    assert client.snapshot()["A"][0] == b"-"
    assert client.diff(b"thirdPartyId,tier\nA,bronze\nB,silver\n").sent_ids == ["A"]


def test_a_merge_that_keeps_losing_gives_up_with_a_reason(tmp_path):
    client = Client(tmp_path)
    client.run(csv_of(people(10)))
    job = client.diff(csv_of({i: ("x", *v[1:]) for i, v in people(10).items()}))

    class Busy(MemPointers):
        def put(self, *args, **kwargs):
            return False

    busy = Busy()
    busy.items = client.pointers.items
    with pytest.raises(RuntimeError, match="3 merges lost"):
        update_snapshot(
            client_code="acme",
            id_type="thirdPartyId",
            job_id=job.job_id,
            base_version=1,
            partitions=job.diff.partitions,
            names=job.diff.names,
            candidates=job.candidates,
            confirmed=b"\xff" * 2,
            objects=client.objects,
            pointers=busy,
            workdir=tmp_path / "busy",
            max_attempts=3,
        )


# ------------------------------------------------------------------------------------- streaming
def test_the_diff_reads_each_partition_once_and_never_the_whole_snapshot_at_once(tmp_path):
    client = Client(tmp_path, partitions=16)
    rows = people(2000)
    client.run(csv_of(rows))
    pointer = client.pointers.get("acme", "thirdPartyId")
    assert len(pointer.keys) == 16 and pointer.ids == 2000
    sizes = [
        sum(1 for _ in read_records(io.BytesIO(client.objects.data[k]))[1]) for k in pointer.keys.values()
    ]
    assert max(sizes) < 2000 / 16 * 1.5  # partitions are bounded shares of the ids
    client.objects.opened.clear()
    client.diff(csv_of(rows))
    assert sorted(client.objects.opened) == sorted(pointer.keys.values())


def test_a_truncated_snapshot_file_fails_the_diff(tmp_path):
    client = Client(tmp_path, partitions=1)
    client.run(csv_of(people(3000)))
    key = client.pointers.get("acme", "thirdPartyId").keys[0]
    client.objects.data[key] = client.objects.data[key][: len(client.objects.data[key]) // 2]
    with pytest.raises((EOFError, gzip.BadGzipFile)):
        client.diff(csv_of(people(3000)))


def test_rebatch_keeps_limits_and_source_lines(tmp_path):
    data = b"thirdPartyId,tier\n" + b"".join(b"ID%03d,v%d\n" % (i, i) for i in range(40))
    data = data.replace(b"ID005,v5\n", b"ID005,v5\n\n")  # a blank line: source lines jump by one
    batches = split(data, tmp_path / "engine", batch_max_rows=7)
    keep = [s for s in range(40) if s % 3]
    sent = rebatch(batches, keep, out_dir=tmp_path / "out", max_rows=5, max_bytes=70)
    seen = []
    for batch in sent:
        body = Path(batch.path).read_bytes()
        assert body.startswith(b"batch=thirdPartyId,tier\n") and len(body) == batch.bytes < 70
        assert batch.rows <= 5
        for index, line in enumerate(body.splitlines()[1:]):
            n = int(line[2:5])
            seen.append(n)
            assert batch.source_line(index) == n + 2 + (n > 5)  # header is line 1
    assert seen == keep


# ------------------------------------------------------------------------------------- old files
def at(seconds: int) -> str:
    return datetime.fromtimestamp(1_795_000_000 + seconds, UTC).isoformat(timespec="seconds")


def snapshot_files(client: Client) -> set[str]:
    return {key for key in client.objects.data if key.startswith("delta/")}


def test_replaced_files_are_kept_for_the_grace_period_then_deleted_and_current_ones_never(tmp_path):
    client = Client(tmp_path, partitions=4)
    rows = people(80)
    client.update(client.diff(csv_of(rows)), now=at(0))
    first = client.pointers.get("acme", "thirdPartyId")
    assert len(first.keys) == 4 and first.retired == ()
    # Day 2 changes ids in partition 0 only: the other three keep day 1's files.
    in_p0 = [i for i in rows if partition_of(i.encode(), 4) == 0]
    day2 = {**rows, **{i: ("tier-day2", *rows[i][1:]) for i in in_p0}}
    reader = client.diff(csv_of(day2))  # a job whose diff read version 1 ...
    client.update(reader, now=at(100), grace_seconds=3600)
    second = client.pointers.get("acme", "thirdPartyId")
    assert [(r.at, r.parts) for r in second.retired] == [(at(100), (0,))]
    # ... and one still streaming version 1 within the grace period reads every file it names.
    late = diff_batches(
        [Path(b.path) for b in split(csv_of(day2), tmp_path / "late")],
        pointer=first,
        objects=client.objects,
        workdir=tmp_path / "late-delta",
        partitions=4,
    )
    assert late.changed == len(in_p0)
    # Within the grace period nothing is deleted.
    day3 = {**day2, **{i: ("tier-day3", *day2[i][1:]) for i in in_p0}}
    third = client.update(client.diff(csv_of(day3)), now=at(100 + 3600), grace_seconds=3600)
    assert third.deleted == 0 and first.keys[0] in client.objects.data
    # The first merge after it deletes the file replaced at 100, and only it.
    day4 = {**day3, **{i: ("tier-day4", *day3[i][1:]) for i in in_p0}}
    fourth = client.update(client.diff(csv_of(day4)), now=at(100 + 3601), grace_seconds=3600)
    assert fourth.deleted == 1 and fourth.to_dict()["deleted"] == 1
    assert first.keys[0] not in client.objects.data
    pointer = client.pointers.get("acme", "thirdPartyId")
    retired = {key for r in pointer.retired for key in r.files()}
    # Every file is either current or waiting out its grace period: nothing leaks, and the three
    # partitions untouched since day 1 keep their (old) files.
    assert snapshot_files(client) == set(pointer.keys.values()) | retired
    assert [pointer.keys[p] for p in (1, 2, 3)] == [first.keys[p] for p in (1, 2, 3)]
    assert client.diff(csv_of(day4)).sent_ids == []  # the snapshot reads whole


def test_a_merge_that_lost_the_race_deletes_the_files_no_pointer_names(tmp_path):
    client = Client(tmp_path)
    rows = people(100)
    client.run(csv_of(rows))
    ids = list(rows)
    job_a = client.diff(csv_of({i: ("a", *rows[i][1:]) for i in ids[:50]}))
    job_b = client.diff(csv_of({i: ("b", *rows[i][1:]) for i in ids[50:]}))
    client.pointers.before_put = lambda: client.update(job_a, now=at(10))
    assert client.update(job_b, now=at(10)).attempts == 2
    # B's first attempt wrote version 2 files under its own id; A's pointer won version 2.
    assert not [key for key in snapshot_files(client) if f"v00000002-{job_b.job_id}/" in key]
    pointer = client.pointers.get("acme", "thirdPartyId")
    assert snapshot_files(client) == set(pointer.keys.values()) | {
        k for r in pointer.retired for k in r.files()
    }


def test_a_deletion_s3_refuses_never_fails_the_update_and_is_tried_again(tmp_path):
    client = Client(tmp_path, partitions=1)
    client.update(client.diff(b"thirdPartyId,tier\nA,gold\n"), now=at(0))
    client.update(client.diff(b"thirdPartyId,tier\nA,silver\n"), now=at(10), grace_seconds=0)
    client.objects.refuse_deletes = True
    result = client.update(client.diff(b"thirdPartyId,tier\nA,bronze\n"), now=at(20), grace_seconds=0)
    assert result.confirmed == 1 and result.deleted == 0
    assert len(client.pointers.get("acme", "thirdPartyId").retired) == 2  # still listed
    client.objects.refuse_deletes = False
    result = client.update(client.diff(b"thirdPartyId,tier\nA,iron\n"), now=at(30), grace_seconds=0)
    assert result.deleted == 2 and len(snapshot_files(client)) == 2  # current + the one just replaced
