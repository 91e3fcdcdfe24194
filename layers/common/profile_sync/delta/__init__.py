"""Delta sync: send only the rows whose values Target has not already confirmed.

Opt-in per client. The pipeline keeps, per client code and id type, a *snapshot* of what Target
last confirmed: for each id, a hash of the row as sent and a short hash of each attribute value.

- ``rowhash``: the hashes. A row's hash covers its non-empty (name, value) pairs exactly as sent
  (URL-encoded), sorted by name, so reordering a file's columns changes nothing.
- ``snapshot``: the format. ``partitions`` (a power of two) gzip text files, an id's partition
  picked by a CRC of the id, each file sorted by id; a pointer (version, partition keys) names the
  current files. Files are never overwritten: a new version writes new keys.
- ``diff``: a new file's rows (its batch files) against the snapshot, partition by partition:
  memory holds one partition of the new file and one of the snapshot, never the whole snapshot
  (the partition count bounds both). Rows whose values Target
  already holds are ``unchanged``; the others are written as *candidates* and the batch files are
  rewritten without the unchanged rows (``rebatch``).
- ``update``: after the job ends, the candidates Target confirmed are merged into the snapshot,
  and the pointer is written only if its version is still the one read (a conditional write);
  when another job of the client got there first the merge is done again on the newer snapshot.

**Empty values.** Target ignores an empty value: it never clears an attribute (TARGET_API.md).
So an emptied value is not a change: a row whose only difference is an emptied value is
``unchanged`` and is not sent, and the snapshot keeps the old value's hash, as Target keeps the
old value. An emptied value counts as a change only where Target can apply it: no API of this
pipeline can (``EMPTY_CLEARS``); a row with another changed value is sent, and Target applies that
value only. A column missing from the file is treated the same way.

**What counts as confirmed.** A row of a batch that ended ``complete`` and that Target did not
name as failed, when the batch's succeeded count covers every row not named (v1 counts rows it
found no profile for without naming them: then no row of that batch is confirmed). Rows not
confirmed keep their old hash, so they are sent again next time. The single update API answers
success for an id without a profile and creates none: its rows are never confirmed.

**Concurrent jobs.** Each record carries the snapshot version that wrote it. A confirmed row whose
id was written by another job after this job read the snapshot is ambiguous (Target applies
batches in any order): the id is marked unknown and sent again next time. Two confirmed rows of
one job for one id with different values are ambiguous too.
"""

from profile_sync.delta.diff import DiffResult, diff_batches, rebatch
from profile_sync.delta.rowhash import RowHasher
from profile_sync.delta.snapshot import EMPTY_CLEARS, Pointer, PointerStore, SnapshotObjects, partition_of
from profile_sync.delta.update import UpdateResult, confirmed_bits, update_snapshot

__all__ = [
    "EMPTY_CLEARS",
    "DiffResult",
    "Pointer",
    "PointerStore",
    "RowHasher",
    "SnapshotObjects",
    "UpdateResult",
    "confirmed_bits",
    "diff_batches",
    "partition_of",
    "rebatch",
    "update_snapshot",
]
