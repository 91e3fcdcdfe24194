"""Target's profiles, as its batches and single updates leave them: what profile fetch answers.

Compact, because `profile-sync run` keeps a million of them in its own process: a profile is one
string keyed by its visitor id (the very string the batch holds). One a batch created holds the
batch row as sent ("S<schema>\\x1f<row>": its values still URL-encoded, decoded only when fetched),
with the header's names and the time interned once per batch (the schema). A profile changed again
(a second batch, v1, a single update) is re-encoded whole: "G<time>" then, per attribute,
"\\x1e<name>\\x1f<time>\\x1f<value>" with names and times interned and the value URL-encoded (so
no separator can occur in it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from profile_sync_local.emulator.batches import _form_decode, row_is_empty

Attributes = dict[str, tuple[str, float]]  # name -> (value, modified at)


class ProfileStore:
    """Profiles by client and (id type, visitor id); attribute values keep their modification time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._profiles: dict[tuple[str, str], dict[str, str]] = {}  # (client, id type) -> id -> record
        self._names: list[str] = []
        self._name_index: dict[str, int] = {}
        self._times: list[float] = []
        self._time_index: dict[float, int] = {}
        self._schemas: list[tuple[tuple[str, ...], float]] = []
        self._schema_index: dict[tuple[tuple[str, ...], float], int] = {}

    def put(self, client: str, id_type: str, visitor_id: str, attrs: dict[str, str] | None = None) -> None:
        """Create (or extend) a profile: seeds data for v1 and single-update tests."""
        self.update(client, id_type, visitor_id, attrs or {}, create=True)

    def update(
        self, client: str, id_type: str, visitor_id: str, attrs: dict[str, str], *, create: bool
    ) -> bool:
        """Apply non-empty values; False when the profile doesn't exist and create is False."""
        now = self._clock()
        with self._lock:
            profiles = self._profiles.setdefault((client, id_type), {})
            record = profiles.get(visitor_id)
            if record is None and not create:
                return False
            _, stored = self._decode(record) if record is not None else (now, {})
            for name, value in attrs.items():
                if value != "":  # empty values never clear
                    stored[name] = (value, now)
            profiles[visitor_id] = self._encode(now, stored)
            return True

    def outcomes(
        self, client: str, id_type: str, ids: list[str], lines: list[str], fails: list[bool], *, create: bool
    ) -> list[str]:
        """Each row's outcome when its batch completes: failed, not_found (no profile and create
        is False) or success (a row of only empty values too: nothing to apply)."""
        with self._lock:
            profiles = self._profiles.get((client, id_type), {})
            if create:
                return ["failed" if failed else "success" for failed in fails]
            return [
                "failed"
                if failed
                else ("success" if visitor_id in profiles or row_is_empty(line) else "not_found")
                for visitor_id, line, failed in zip(ids, lines, fails, strict=True)
            ]

    def apply(
        self,
        client: str,
        id_type: str,
        *,
        names: tuple[str, ...],
        ids: list[str],
        lines: list[str],
        write: list[bool],
    ) -> None:
        """Write the values of the batch rows marked in write, creating missing profiles."""
        now = self._clock()
        with self._lock:
            prefix = f"S{self._schema(names, now)}\x1f"
            profiles = self._profiles.setdefault((client, id_type), {})
            for visitor_id, line, wanted in zip(ids, lines, write, strict=True):
                if not wanted or row_is_empty(line):
                    continue
                record = profiles.get(visitor_id)
                if record is None:
                    profiles[visitor_id] = prefix + line
                    continue
                _, stored = self._decode(record)
                stored.update(self._row_attributes(names, line, now))
                profiles[visitor_id] = self._encode(now, stored)

    def exists(self, client: str, id_type: str, visitor_id: str) -> bool:
        with self._lock:
            return visitor_id in self._profiles.get((client, id_type), {})

    def get(self, client: str, id_type: str, visitor_id: str) -> dict[str, str] | None:
        record = self.record(client, id_type, visitor_id)
        return None if record is None else {k: v for k, (v, _) in record["attributes"].items()}

    def record(self, client: str, id_type: str, visitor_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._profiles.get((client, id_type), {}).get(visitor_id)
            if record is None:
                return None
            modified, attributes = self._decode(record)
            return {"modifiedAt": modified, "attributes": attributes}

    def count(self, client: str | None = None) -> int:
        with self._lock:
            return sum(len(p) for (c, _), p in self._profiles.items() if client is None or c == client)

    def clear(self) -> None:
        with self._lock:
            self._profiles.clear()

    # Encoding (callers hold the lock) ----------------------------------------------------------

    def _schema(self, names: tuple[str, ...], at: float) -> int:
        key = (names, at)
        index = self._schema_index.get(key)
        if index is None:
            index = self._schema_index[key] = len(self._schemas)
            self._schemas.append(key)
        return index

    def _name(self, name: str) -> int:
        index = self._name_index.get(name)
        if index is None:
            index = self._name_index[name] = len(self._names)
            self._names.append(name)
        return index

    def _time(self, at: float) -> int:
        index = self._time_index.get(at)
        if index is None:
            index = self._time_index[at] = len(self._times)
            self._times.append(at)
        return index

    @staticmethod
    def _row_attributes(names: tuple[str, ...], line: str, at: float) -> Attributes:
        values = line.split(",")[1 : len(names) + 1]
        return {name: (_form_decode(v), at) for name, v in zip(names, values, strict=False) if v}

    def _decode(self, record: str) -> tuple[float, Attributes]:
        if record[0] == "S":
            schema, _, line = record[1:].partition("\x1f")
            names, at = self._schemas[int(schema)]
            return at, self._row_attributes(names, line, at)
        head, *fields = record[1:].split("\x1e")
        attributes: Attributes = {}
        for field in fields:
            name, time, value = field.split("\x1f")
            attributes[self._names[int(name)]] = (unquote(value), self._times[int(time)])
        return self._times[int(head)], attributes

    def _encode(self, modified: float, attributes: Attributes) -> str:
        return f"G{self._time(modified)}" + "".join(
            f"\x1e{self._name(name)}\x1f{self._time(at)}\x1f{quote(value, safe='')}"
            for name, (value, at) in attributes.items()
        )
