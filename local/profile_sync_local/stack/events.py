"""The ingest's events: the EventBridge event of a drop, and what was dropped under each event in events/."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from urllib.parse import quote_plus

from profile_sync_local.stack.project import ROOT

# What was dropped under each ingest event's key in events/ (the events say only where and how big):
# the handler tests and `make sam-local` put these bytes there before running an event.
ODD_KEY_CSV = "pcId,city,note\n1001,München,VIP client\n1002,Köln,\n".encode()


def event_sources() -> dict[str, bytes]:
    sample = (ROOT / "local" / "samples" / "visitors.csv").read_bytes()
    return {
        "ingest_object_created.json": sample,
        "ingest_object_created_gzip_odd_key.json": gzip.compress(ODD_KEY_CSV, mtime=0),
        "ingest_object_created_single_api.json": sample,
    }


def drop_event(bucket: str, key: str, size: int, *, at: datetime, sequencer: str | None = None) -> dict:
    """The EventBridge "Object Created" event S3 sends for a drop (events/ingest_object_created.json
    with this object); the key URL-encoded as S3 encodes it in events."""
    event = json.loads((ROOT / "events" / "ingest_object_created.json").read_text())
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"].update(key=quote_plus(key, safe="/"), size=size)
    if sequencer is not None:
        event["detail"]["object"]["sequencer"] = sequencer
    return event
