"""The emulator's compact profile store: what it keeps must read back exactly as it was applied."""

from __future__ import annotations

import sys

import pytest

from profile_sync_local.emulator.batches import row_is_empty
from profile_sync_local.emulator.store import ProfileStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> ProfileStore:
    return ProfileStore(clock)


@pytest.mark.parametrize(
    ("line", "empty"),
    [
        ("1", True),
        ("1,", True),
        ("1,,,", True),
        ("1,x", False),
        ("1,,x", False),
        ("1,x,", False),
        (",", True),
    ],
)
def test_a_row_is_empty_when_only_commas_follow_the_id(line, empty):
    assert row_is_empty(line) is empty


def test_batch_rows_read_back_decoded_with_the_batch_time(store, clock):
    names = ("tier", "city", "note")
    lines = ["a,gold,S%C3%A3o+Paulo,", "b,,x%2Cy%26z,n", "c,,,"]
    store.apply(
        "demo", "thirdPartyId", names=names, ids=["a", "b", "c"], lines=lines, write=[True, True, True]
    )
    assert store.get("demo", "thirdPartyId", "a") == {"tier": "gold", "city": "São Paulo"}
    assert store.get("demo", "thirdPartyId", "b") == {"city": "x,y&z", "note": "n"}
    assert store.get("demo", "thirdPartyId", "c") is None  # only empty values: nothing created
    assert store.record("demo", "thirdPartyId", "a")["modifiedAt"] == clock.now
    assert store.get("demo", "pcId", "a") is None and store.get("other", "thirdPartyId", "a") is None
    assert store.count("demo") == 2 and store.count() == 2


def test_rows_not_marked_for_writing_are_not_written(store):
    store.apply("demo", "pcId", names=("a",), ids=["1", "2"], lines=["1,x", "2,y"], write=[False, True])
    assert store.get("demo", "pcId", "1") is None
    assert store.get("demo", "pcId", "2") == {"a": "y"}


def test_later_updates_merge_keep_times_and_never_clear(store, clock):
    store.apply("demo", "pcId", names=("a", "b"), ids=["1"], lines=["1,x,y"], write=[True])
    first = clock.now
    clock.now += 60
    store.apply("demo", "pcId", names=("b", "c"), ids=["1"], lines=["1,,z"], write=[True])
    clock.now += 60
    store.update("demo", "pcId", "1", {"a": "sep\x1e\x1f%,+", "b": ""}, create=False)
    record = store.record("demo", "pcId", "1")
    assert record == {
        "modifiedAt": first + 120,
        "attributes": {"a": ("sep\x1e\x1f%,+", first + 120), "b": ("y", first), "c": ("z", first + 60)},
    }


def test_single_updates_never_create_and_put_does(store):
    assert store.update("demo", "pcId", "1", {"a": "x"}, create=False) is False
    assert not store.exists("demo", "pcId", "1")
    store.put("demo", "pcId", "1", {"a": "x"})
    assert store.exists("demo", "pcId", "1") and store.get("demo", "pcId", "1") == {"a": "x"}
    store.clear()
    assert store.count() == 0


def test_outcomes_follow_the_api_version(store):
    store.put("demo", "pcId", "1", {"a": "x"})
    ids, lines = ["1", "2", "3", "4"], ["1,y", "2,y", "3,", "4,y"]
    fails = [False, False, False, True]
    assert store.outcomes("demo", "pcId", ids, lines, fails, create=False) == [
        "success",
        "not_found",
        "success",  # only empty values: nothing to apply, not a missing profile
        "failed",
    ]
    assert store.outcomes("demo", "pcId", ids, lines, fails, create=True) == ["success"] * 3 + ["failed"]


def test_a_profile_costs_about_its_row_not_a_dict_of_dicts(store):
    names = ("first", "city", "tier", "score", "since")
    ids = [str(10_000_000 + i) for i in range(1000)]
    lines = [f"{i},Maria,Lisboa,gold,{n % 1000},2024-05-17" for n, i in enumerate(ids)]
    store.apply("demo", "pcId", names=names, ids=ids, lines=lines, write=[True] * len(ids))
    records = store._profiles[("demo", "pcId")]
    per_profile = sum(sys.getsizeof(r) for r in records.values()) / len(records)
    assert per_profile < 100  # the row as sent plus a few bytes (a dict of tuples was ~700)
