"""What a local run keeps between runs (`profile-sync run --state DIR`): the delta snapshots and
the quota counters, which the deployed stack keeps in its bucket and table.

A local run's AWS is a moto server that ends with the run. With --state, the snapshot files
(`delta/` in the drop bucket) and the table's snapshot pointers and quota counters are copied into
DIR when the run ends, and back into the new run's resources before its file is dropped:

    DIR/objects/delta/<client>/<idType>/...     the snapshot files, as in the bucket
    DIR/items.json                              DynamoDB items (DynamoDB JSON), one list

Nothing else is kept (jobs, batches, reports stay with their run's --out).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import boto3

SNAPSHOT_PREFIX = "delta/"
# Item keys kept: delta snapshot pointers, daily row quota, rolling single-update quota.
ITEM_PREFIXES = ("DELTA#", "QUOTA#", "SINGLEQUOTA#")
ITEMS_FILE = "items.json"
OBJECTS_DIR = "objects"


def load_state(state_dir: Path, *, bucket: str, table: str, region: str) -> dict[str, int]:
    """Put DIR's snapshot files and items into the run's resources; counts of what was loaded."""
    s3 = boto3.client("s3", region_name=region)
    objects = 0
    root = state_dir / OBJECTS_DIR
    for path in sorted(root.rglob("*")) if root.exists() else ():
        if path.is_file():
            s3.upload_file(str(path), bucket, path.relative_to(root).as_posix())
            objects += 1
    items_path = state_dir / ITEMS_FILE
    items = json.loads(items_path.read_text()) if items_path.exists() else []
    dynamodb = boto3.client("dynamodb", region_name=region)
    for item in items:
        dynamodb.put_item(TableName=table, Item=item)
    return {"objects": objects, "items": len(items)}


def save_state(state_dir: Path, *, bucket: str, table: str, region: str) -> dict[str, int]:
    """Copy the run's snapshot files and items into DIR (replacing what it held)."""
    s3 = boto3.client("s3", region_name=region)
    root = state_dir / OBJECTS_DIR
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=SNAPSHOT_PREFIX)
        for obj in page.get("Contents", [])
    ]
    for key in keys:
        target = root / key
        if not target.exists():  # snapshot files are never overwritten: one written is final
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
    # Files a merge deleted (replaced more than DELTA_CLEANUP_GRACE_SECONDS ago) go from DIR too.
    present = set(keys)
    for path in sorted((root / SNAPSHOT_PREFIX).rglob("*")) if (root / SNAPSHOT_PREFIX).exists() else ():
        if path.is_file() and path.relative_to(root).as_posix() not in present:
            path.unlink()
    dynamodb = boto3.client("dynamodb", region_name=region)
    items = [
        item
        for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        for item in page.get("Items", [])
        if item["pk"]["S"].startswith(ITEM_PREFIXES)
    ]
    items.sort(key=lambda item: (item["pk"]["S"], item["sk"]["S"]))
    state_dir.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed: a run stopped midway leaves the previous state readable.
    with tempfile.NamedTemporaryFile("w", dir=state_dir, delete=False, suffix=".tmp") as out:
        json.dump(items, out, indent=1, sort_keys=True)
    os.replace(out.name, state_dir / ITEMS_FILE)
    return {"objects": len(keys), "items": len(items)}
