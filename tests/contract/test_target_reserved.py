"""Values reach Target as the user meant them: & # ? = + % and space, through both paths.

The emulator decodes like Target's form decoding: in a bulk body a raw `&` ends the batch
parameter and each cell is decoded with `+` as a space; a single-update query is split on `&`,
loses everything after a `#` (the HTTP client never sends a fragment) and is decoded the same way.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from profile_sync.adobe_target.errors import TargetRejected
from profile_sync.settings import Settings
from profile_sync.validate import validate_and_split
from tests.contract.conftest import CLIENT

# (what the user wrote in an encoded-mode file, what Target must store)
ENCODED = [
    ("x&mbox3rdPartyId=CRM-VICTIM", "x&mbox3rdPartyId=CRM-VICTIM"),
    ("a#b", "a#b"),
    ("why?", "why?"),
    ("k=v", "k=v"),
    ("50%25", "50%"),
    ("a%2Bb", "a+b"),
    ("a%20b", "a b"),
    ("%26%23%3F%3D", "&#?="),
]
# Plain text in a raw-mode file: the engine encodes everything.
RAW = ["x&mbox3rdPartyId=CRM-VICTIM", "a#b", "why?", "k=v", "1+1=2", "50% off", "a b", "%zz", "é&ü"]


def _engine(tmp_path: Path, csv: str, mode: str) -> bytes:
    out = tmp_path / "out"
    result = validate_and_split(io.BytesIO(csv.encode()), out, Settings(input_mode=mode))
    assert result.rejected == 0, (out / "rejects.csv").read_text()
    (batch,) = result.batches
    return Path(batch.path).read_bytes()


@pytest.mark.parametrize(("written", "meant"), ENCODED)
def test_bulk_encoded_value_lands_as_meant(client, emulator, tmp_path, written, meant):
    body = _engine(tmp_path, f"thirdPartyId,a,b\nCRM-1,{written},after\nCRM-2,second,row\n", "encoded")
    client.submit_batch(body)
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-1") == {"a": meant, "b": "after"}
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-2") == {"a": "second", "b": "row"}
    assert emulator.store.count(CLIENT) == 2  # no CRM-VICTIM, nothing else


@pytest.mark.parametrize("text", RAW)
def test_bulk_raw_value_lands_as_meant(client, emulator, tmp_path, text):
    body = _engine(tmp_path, f"thirdPartyId,a,b\nCRM-1,{text},after\nCRM-2,second,row\n", "raw")
    client.submit_batch(body)
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-1") == {"a": text, "b": "after"}
    assert emulator.store.count(CLIENT) == 2


def test_encoded_plus_is_rejected_by_the_engine(tmp_path):
    result = validate_and_split(
        io.BytesIO(b"thirdPartyId,a\nCRM-1,a+b\nCRM-2,ok\n"), tmp_path / "out", Settings()
    )
    assert (result.accepted, result.rejected) == (1, 1)
    assert "ambiguous_plus" in (tmp_path / "out" / "rejects.csv").read_text()


@pytest.mark.parametrize(("written", "meant"), ENCODED)
def test_single_update_encoded_value_updates_one_profile_as_meant(client, emulator, written, meant):
    for visitor in ("CRM-1", "CRM-VICTIM"):
        emulator.store.put(CLIENT, "thirdPartyId", visitor, {"a": "old", "b": "old"})
    client.single_update("thirdPartyId", "CRM-1", {"a": written, "b": "after"}, encoded=True)
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-1") == {"a": meant, "b": "after"}
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-VICTIM") == {"a": "old", "b": "old"}


@pytest.mark.parametrize("text", RAW)
def test_single_update_plain_value_updates_one_profile_as_meant(client, emulator, text):
    emulator.store.put(CLIENT, "thirdPartyId", "CRM-1")
    client.single_update("thirdPartyId", "CRM-1", {"a": text, "b": "after"})
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-1") == {"a": text, "b": "after"}


@pytest.mark.parametrize(("value", "why"), [("a+b", r"raw '\+'"), ("50%", "two hex digits"), ("%zz", "hex")])
def test_single_update_refuses_ambiguous_encoded_values_before_sending(client, emulator, value, why):
    with pytest.raises(TargetRejected, match=why) as caught:
        client.single_update("thirdPartyId", "CRM-1", {"a": value}, encoded=True)
    assert value not in str(caught.value)
    assert emulator.calls["update"] == 0


# ---- the double is no kinder than Target ----------------------------------------------------------


def test_emulator_splits_a_bulk_body_at_a_raw_amp(client, emulator):
    client.submit_batch(b"batch=thirdPartyId,a\nCRM-1,x&y\nCRM-2,z\n")
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-1") == {"a": "x"}
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-2") is None  # lost after the &


def test_emulator_decodes_a_raw_query_like_target(client, emulator, monkeypatch):
    # What a client sending values as they are would cause: another profile updated, a row cut.
    for visitor in ("CRM-1", "CRM-VICTIM"):
        emulator.store.put(CLIENT, "thirdPartyId", visitor)
    client.session.get(
        f"{emulator.url}/m2/{CLIENT}/profile/update?mbox3rdPartyId=CRM-1"
        "&profile.a=x&mbox3rdPartyId=CRM-VICTIM&profile.b=1+1",
        timeout=5,
    )
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-VICTIM") == {"a": "x", "b": "1 1"}
    client.session.get(
        f"{emulator.url}/m2/{CLIENT}/profile/update?mbox3rdPartyId=CRM-1&profile.a=a#b&profile.b=c"
    )
    assert emulator.store.get(CLIENT, "thirdPartyId", "CRM-1") == {"a": "a"}
