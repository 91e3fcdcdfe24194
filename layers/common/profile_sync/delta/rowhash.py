"""Hashes of a row's attribute values, as sent to Target.

A row hash is 8 bytes of BLAKE2b over ``name=value`` pairs joined by ``&``, sorted by name, empty
values left out: what Target would apply, whatever the file's column order. Names and values are
hashed as written in the batch file (URL-encoded, where ``&`` and ``=`` are always escaped), so the
pairs can't run into each other. Each value also gets a 6-byte hash of its own, kept per attribute
in the snapshot, to tell an emptied or missing value (no change for Target) from a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import blake2b
from itertools import compress
from operator import add, itemgetter

ROW_HASH_BYTES = 8
VALUE_HASH_BYTES = 6  # per attribute: a changed value taken for unchanged with odds 2**-48


class RowHasher:
    """Hashes for the rows of one file: the attribute names come from its header, once."""

    def __init__(self, names: Sequence[bytes]) -> None:
        self.names = list(names)
        self.width = len(self.names) + 1  # fields of a full row, the id first
        # Field positions (after the id) in name order, each with its "name=" prefix ready.
        ordered = sorted((name + b"=", i + 1) for i, name in enumerate(self.names))
        self._prefixes = [prefix for prefix, _ in ordered]
        positions = [i for _, i in ordered]
        self._pick: Callable[[list[bytes]], tuple[bytes, ...]] = (
            itemgetter(*positions) if len(positions) > 1 else lambda f: (f[positions[0]],)
        )
        self._pad = [b""] * self.width

    def fields_hash(self, fields: list[bytes]) -> bytes:
        """The hash (hex bytes) of a batch row split on commas, the id first; pads ``fields`` in place."""
        if len(fields) < self.width:  # a row may hold fewer values than the header: the rest are empty
            fields += self._pad[len(fields) :]
        values = self._pick(fields)
        # C-level all through: "name=value" pairs of the non-empty values, in name order.
        pairs = b"&".join(compress(map(add, self._prefixes, values), values))
        return blake2b(pairs, digest_size=ROW_HASH_BYTES).hexdigest().encode()

    def row_hash(self, values: Sequence[bytes]) -> bytes:
        """The hash of a row's values (the fields after the id; may be fewer than the names)."""
        return self.fields_hash([b"", *values])

    def value_hashes(self, values: Sequence[bytes]) -> list[bytes]:
        """One hash per name, in header order; b"" where the value is empty or missing."""
        n = len(values)
        return [
            blake2b(values[i], digest_size=VALUE_HASH_BYTES).hexdigest().encode()
            if i < n and values[i]
            else b""
            for i in range(len(self.names))
        ]
