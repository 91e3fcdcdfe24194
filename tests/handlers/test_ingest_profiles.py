"""The ingest function with client profiles in moto's SSM: mapping, versions, overrides, refusals."""

from __future__ import annotations

import csv
import io
import json

import boto3
import pytest

from profile_sync_local.stack.project import ROOT
from tests.conftest import REGION, load_handler
from tests.handlers.test_ingest import executions, job_record, make_event, put, read

SAMPLES = ROOT / "local" / "samples"
SALESFORCE = (SAMPLES / "salesforce_contacts_eu.csv").read_bytes()
SALESFORCE_PROFILE = json.loads((SAMPLES / "salesforce_contacts_eu.profile.json").read_text())


@pytest.fixture
def ingest(stack, monkeypatch):
    monkeypatch.setenv("CLIENT_PROFILES_MAX_AGE_SECONDS", "0")  # every drop reads the newest version
    return load_handler("ingest")


def drop(stack, ingest, lambda_context, key: str, body: bytes, sequencer: str = "0001") -> dict:
    put(stack, key, body)
    result = ingest.lambda_handler(make_event(key, len(body), sequencer=sequencer), lambda_context)
    return job_record(stack, result["jobId"])


def test_a_salesforce_export_goes_in_as_exported_and_the_job_records_the_profile_version(
    stack, ingest, lambda_context
):
    assert stack.put_profile("acme-eu", SALESFORCE_PROFILE) == 1
    job = drop(stack, ingest, lambda_context, "incoming/acme-eu/contacts.csv", SALESFORCE)

    assert job["status"] == "QUEUED", job.get("reason")
    assert job["profileVersion"] == 1
    assert (job["received"], job["accepted"], job["rejected"], job["skipped"]) == (8, 5, 2, 1)
    assert job["reasons"] == {"invalid_text_encoding": 1, "too_many_fields": 1}
    manifest = json.loads(read(stack, job["manifestKey"]))
    assert manifest["clientProfile"] == {"version": 1}
    assert manifest["columns"] == [
        "loyaltyTier",
        "preferredStore",
        "lastPurchaseDate",
        "lifetimeValue",
        "crmSource",
    ]
    batch = read(stack, f"jobs/{job['jobId']}/batches/batch-00001.txt").decode()
    lines = batch.splitlines()
    assert (
        lines[0] == "batch=thirdPartyId,loyaltyTier,preferredStore,lastPurchaseDate,lifetimeValue,crmSource"
    )
    assert lines[1] == "0035g00000AbCdE1,Gold,M%C3%BCnchen%2C%20Marienplatz,2026-11-28,1.249%2C90,salesforce"
    assert lines[2] == "0035g00000AbCdE2,Silver,Paris%3B%20Op%C3%A9ra,2026-11-30,389%2C00,salesforce"
    # Dropped columns never leave: no e-mail address, first or last name in any batch.
    assert "example" not in batch and "J%C3%BCrgen" not in batch
    rejects = list(csv.DictReader(io.StringIO(read(stack, job["rejectsKey"]).decode())))
    assert [(r["line"], r["reason"]) for r in rejects] == [
        ("9", "invalid_text_encoding"),
        ("10", "too_many_fields"),
    ]


def test_a_new_profile_version_applies_to_the_next_drop_and_is_recorded(stack, ingest, lambda_context):
    stack.put_profile("acme-eu", SALESFORCE_PROFILE)
    first = drop(stack, ingest, lambda_context, "incoming/acme-eu/a.csv", SALESFORCE, "0001")
    rename = {k: v for k, v in SALESFORCE_PROFILE["rename"].items() if k != "Lifetime Value"}
    changed = SALESFORCE_PROFILE | {"rename": rename, "drop": [*SALESFORCE_PROFILE["drop"], "Lifetime Value"]}
    assert stack.put_profile("acme-eu", changed) == 2
    second = drop(stack, ingest, lambda_context, "incoming/acme-eu/b.csv", SALESFORCE, "0002")
    assert (first["profileVersion"], second["profileVersion"]) == (1, 2)
    assert "lifetimeValue" not in json.loads(read(stack, second["manifestKey"]))["columns"]


def test_the_key_path_api_and_mode_still_override_the_profile(stack, ingest, lambda_context):
    stack.put_profile("acme", {"api_version": "v1", "input_mode": "raw", "rename": {"tier": "loyalty"}})
    by_profile = drop(stack, ingest, lambda_context, "incoming/acme/a.csv", b"pcId,tier\n1,gold star\n", "1")
    by_key = drop(
        stack,
        ingest,
        lambda_context,
        "incoming/acme/api=v2/mode=encoded/b.csv",
        b"pcId,tier\n1,gold%20star\n",
        "2",
    )
    assert (by_profile["apiVersion"], by_profile["inputMode"]) == ("v1", "raw")
    assert (by_key["apiVersion"], by_key["inputMode"]) == ("v2", "encoded")
    inputs = {
        json.loads(
            boto3.client("stepfunctions", region_name=REGION).describe_execution(
                executionArn=e["executionArn"]
            )["input"]
        )["apiVersion"]
        for e in executions(stack)
    }
    assert inputs == {"v1", "v2"}
    for job in (by_profile, by_key):
        assert (
            read(stack, f"jobs/{job['jobId']}/batches/batch-00001.txt")
            == b"batch=pcId,loyalty\n1,gold%20star\n"
        )


def test_a_profile_stored_by_hand_that_is_invalid_rejects_the_drop_and_says_how_to_fix_it(
    stack, ingest, lambda_context
):
    stack.put_profile("acme", '{"separator": ":"}')
    job = drop(stack, ingest, lambda_context, "incoming/acme/a.csv", b"pcId,a\n1,x\n")
    assert job["status"] == "REJECTED"
    assert "client profile of acme is invalid (separator must be one of" in job["reason"]
    assert "profile-sync clients set" in job["reason"]
    assert executions(stack) == []


def test_a_client_without_a_profile_gets_the_stack_defaults_byte_for_byte(
    stack, ingest, lambda_context, monkeypatch
):
    stack.put_profile("someone-else", SALESFORCE_PROFILE)
    sample = (SAMPLES / "visitors.csv").read_bytes()
    with_store = drop(stack, ingest, lambda_context, "incoming/acme/v.csv", sample, "1")
    monkeypatch.delenv("CLIENT_PROFILES_PATH")
    without = drop(stack, load_handler("ingest"), lambda_context, "incoming/acme/w.csv", sample, "2")
    assert "profileVersion" not in with_store and "profileVersion" not in without
    for name in ("batch-00001.txt",):
        assert read(stack, f"jobs/{with_store['jobId']}/batches/{name}") == read(
            stack, f"jobs/{without['jobId']}/batches/{name}"
        )
    assert read(stack, with_store["rejectsKey"]) == read(stack, without["rejectsKey"])
    keep = ("received", "accepted", "rejected", "skipped", "reasons", "apiVersion", "inputMode", "status")
    assert {k: with_store.get(k) for k in keep} == {k: without.get(k) for k in keep}
