"""Bulk submit (v2/v1) and batch status: the client against the emulator over real HTTP."""

from __future__ import annotations

import io
import re

import boto3
import pytest
from botocore.response import StreamingBody

from profile_sync.adobe_target.errors import TargetMaybeAccepted, TargetRejected, TargetRetryLater
from tests.contract.conftest import CLIENT, batch


def test_v2_submit_creates_profiles_and_reports_complete(client, emulator):
    result = client.submit_batch(batch("123,value1", "124,value1,value4", "125,,value2"))
    assert result.attempts == 1
    assert result.message == "Batch submitted for processing"
    assert result.status_url.startswith(
        f"{emulator.url}/m2/{CLIENT}/v2/profile/batchStatus?batchId={CLIENT}-"
    )
    assert result.status_url.endswith("&m2Node=00")  # Adobe's v2 example: the raw & the parser must take
    assert result.batch_id.startswith(f"{CLIENT}-")

    status = client.batch_status(result.status_url)
    assert (status.state, status.batch_size, status.consumed) == ("complete", 3, 3)
    assert (status.successful, status.not_found, status.failed) == (3, 0, 0)
    assert status.profiles == []  # today's format lists failures only
    assert status.per_profile_format == "none"
    assert emulator.store.get(CLIENT, "pcId", "124") == {"a": "value1", "b": "value4"}
    assert emulator.store.get(CLIENT, "pcId", "125") == {"b": "value2"}

    sent = emulator.requests[0]
    assert sent["method"] == "POST" and sent["path"] == f"/m2/{CLIENT}/v2/profile/batchUpdate"
    assert sent["content_type"] == "application/x-www-form-urlencoded"
    assert not sent["chunked"] and int(sent["content_length"]) == sent["body_bytes"]
    assert emulator.requests[1]["show_details"]


def test_values_are_url_decoded_and_empty_values_never_clear(client, emulator):
    emulator.store.put(CLIENT, "thirdPartyId", "crm-1", {"a": "old", "b": "keep"})
    client.submit_batch(batch("crm-1,x%2Cy%20z,", header="thirdPartyId,a,b"))
    assert emulator.store.get(CLIENT, "thirdPartyId", "crm-1") == {"a": "x,y z", "b": "keep"}


def test_v1_updates_existing_profiles_only(client, emulator):
    emulator.store.put(CLIENT, "pcId", "1", {"a": "old"})
    result = client.submit_batch(batch("1,new", "2,created?"), version="v1")
    assert emulator.requests[-1]["path"] == f"/m2/{CLIENT}/profile/batchUpdate"
    assert emulator.calls["batchUpdate.v1"] == 1
    status = client.batch_status(result.status_url)
    assert (status.state, status.successful, status.not_found, status.failed) == ("complete", 1, 1, 0)
    assert status.profiles == []  # v1 reports the overall status only
    assert emulator.store.get(CLIENT, "pcId", "1") == {"a": "new"}
    assert emulator.store.get(CLIENT, "pcId", "2") is None


def test_body_from_path_file_object_and_s3_stream(client, emulator, tmp_path, aws):
    path = tmp_path / "batch-0001.txt"
    path.write_bytes(batch("1,a"))
    client.submit_batch(path)
    client.submit_batch(str(path))
    with path.open("rb") as handle:
        client.submit_batch(handle)

    class OneWay(io.RawIOBase):  # not seekable, no length: like a socket
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    client.submit_batch(OneWay(batch("2,b")))

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="batches")
    s3.put_object(Bucket="batches", Key="k", Body=batch("3,c"))
    obj = s3.get_object(Bucket="batches", Key="k")
    assert isinstance(obj["Body"], StreamingBody)
    client.submit_batch(obj["Body"], content_length=obj["ContentLength"])

    posts = [r for r in emulator.requests if r["endpoint"] == "batchUpdate"]
    assert len(posts) == 5
    assert all(not r["chunked"] and r["status"] == 200 for r in posts)
    assert emulator.store.count(CLIENT) == 3


def test_a_retry_resends_the_whole_stream(client, emulator):
    class OneWay(io.BytesIO):
        def seekable(self) -> bool:
            return False

    emulator.queue_faults("batchUpdate", "503", "500")
    result = client.submit_batch(OneWay(batch("9,z")))
    assert result.attempts == 3
    assert [r["body_bytes"] for r in emulator.requests] == [len(batch("9,z"))] * 3
    assert emulator.store.get(CLIENT, "pcId", "9") == {"a": "z"}


def test_body_must_start_with_batch_prefix_and_nothing_is_sent(client, emulator):
    with pytest.raises(TargetRejected, match="batch="):
        client.submit_batch(b"pcId,a\n1,x\n")
    assert emulator.calls["batchUpdate"] == 0


@pytest.mark.parametrize("reject_status", [200, 400])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (batch("1,x", header="mboxPC,a"), "First header"),
        (batch("1,x", header="ecid,a"), "First header"),
        (batch("1,x", header="pcId"), "parameter names"),
        (batch("1,x", header="pcId,a,a"), "parameter names"),
        (batch(header="pcId,a"), "no rows"),
    ],
)
def test_bad_batches_answer_success_false(client, emulator, reject_status, body, message):
    emulator.configure(reject_http_status=reject_status)
    with pytest.raises(TargetRejected, match=message) as caught:
        client.submit_batch(body)
    assert caught.value.status == reject_status
    assert caught.value.attempts == 1
    assert emulator.calls["batchUpdate"] == 1


def test_row_and_byte_limits(client, emulator):
    emulator.configure(max_rows=2)
    with pytest.raises(TargetRejected, match="more than 2 rows"):
        client.submit_batch(batch("1,x", "2,x", "3,x"))
    client.submit_batch(batch("1,x", "2,x"))
    body = batch("1,x")
    emulator.configure(max_rows=10, max_bytes=len(body))
    with pytest.raises(TargetRejected, match="less than"):
        client.submit_batch(body)


def test_a_2xx_that_is_not_xml_is_maybe_accepted_and_never_resent(client, emulator):
    # A proxy page or a broken answer: Target may have the batch behind it. Sending it again could
    # apply it twice (Target accepts copies), so the client stops and says so.
    emulator.queue_faults("batchUpdate", "garbage")
    with pytest.raises(TargetMaybeAccepted, match="not Target's XML") as caught:
        client.submit_batch(batch("1,x"))
    assert (caught.value.status, caught.value.attempts, caught.value.status_url) == (200, 1, "")
    assert emulator.calls["batchUpdate"] == 1


def test_status_polls_until_complete_and_applies_on_completion(client, emulator):
    emulator.configure(polls_until_complete=2)
    result = client.submit_batch(batch("1,x"))
    states = [client.batch_status(result.status_url).state for _ in range(3)]
    assert states == ["incomplete", "incomplete", "complete"]
    assert emulator.store.get(CLIENT, "pcId", "1") == {"a": "x"}


def test_incomplete_shows_no_progress_until_complete(client, emulator):
    emulator.configure(polls_until_complete=1)
    status = client.batch_status(client.submit_batch(batch("1,x", "2,y")).status_url)
    assert (status.state, status.batch_size, status.consumed, status.successful) == ("incomplete", 2, 0, 0)
    assert emulator.store.get(CLIENT, "pcId", "1") is None


def test_seconds_until_complete_follow_the_injected_clock(client, emulator, clock):
    emulator.configure(seconds_until_complete=600)
    result = client.submit_batch(batch("1,x"))
    assert client.batch_status(result.status_url).state == "incomplete"
    clock.advance(599)
    assert client.batch_status(result.status_url).state == "incomplete"
    clock.advance(1)
    assert client.batch_status(result.status_url).state == "complete"


def test_stuck_batches(client, emulator):
    emulator.configure(stuck_share=1.0)
    result = client.submit_batch(batch("1,x"))
    for _ in range(3):
        assert client.batch_status(result.status_url).state == "stuck"
    assert emulator.store.get(CLIENT, "pcId", "1") is None


def test_failures_only_format_lists_failed_rows(client, emulator):
    emulator.configure(fail_ids={"2", "4"})
    status = client.batch_status(client.submit_batch(batch("1,x", "2,x", "3,x", "4,x")).status_url)
    assert status.profiles == [("2", "failed"), ("4", "failed")]
    assert status.failed_ids == ["2", "4"]
    assert (status.successful, status.failed, status.per_profile_format) == (2, 2, "failures")
    assert emulator.store.get(CLIENT, "pcId", "2") is None


def test_all_rows_format_of_2017_to_2020(client, emulator):
    emulator.configure(profile_format="all", fail_ids={"2"}, polls_until_complete=1)
    result = client.submit_batch(batch("1,x", "2,x", "3,x"))
    pending = client.batch_status(result.status_url)
    assert pending.profiles == [("1", "pending"), ("2", "pending"), ("3", "pending")]
    assert pending.pending_ids == ["1", "2", "3"]
    done = client.batch_status(result.status_url)
    assert done.profiles == [("1", "success"), ("2", "failed"), ("3", "success")]
    assert done.per_profile_format == "all"


def test_bad_ids_fail_their_row_only(client, emulator):
    status = client.batch_status(
        client.submit_batch(
            batch("ok,x", "a%2Bb,x", "a/b,x", "x" * 257 + ",x", header="thirdPartyId,a")
        ).status_url
    )
    assert status.failed_ids == ["a+b", "a/b", "x" * 257]
    assert status.successful == 1


def test_fail_share_is_seeded(make_client, emulator):
    rows = [f"{i},x" for i in range(200)]

    def failed_ids() -> list[str]:
        emulator.configure(fail_share=0.1, seed=42)
        client = make_client()
        return client.batch_status(client.submit_batch(batch(*rows)).status_url).failed_ids

    first, second = failed_ids(), failed_ids()
    assert first == second
    assert 5 < len(first) < 40


@pytest.mark.parametrize("style", ["404", "empty"])
def test_a_vanished_status_is_unknown_not_success(client, emulator, style):
    emulator.configure(vanish_share=1.0, vanish_after_polls=1, vanish_style=style, polls_until_complete=3)
    result = client.submit_batch(batch("1,x"))
    assert client.batch_status(result.status_url).state == "incomplete"
    status = client.batch_status(result.status_url)
    assert status.state == "unknown"
    assert status.http_status == (404 if style == "404" else 200)
    assert (
        client.batch_status(f"{emulator.url}/m2/{CLIENT}/profile/batchStatus?batchId=nope").state == "unknown"
    )


def test_only_the_last_statuses_are_kept(client, emulator):
    emulator.configure(keep_statuses=2)
    urls = [client.submit_batch(batch(f"{i},x")).status_url for i in range(3)]
    assert [client.batch_status(u).state for u in urls] == ["unknown", "complete", "complete"]


def test_status_url_is_followed_as_is(client, emulator):
    emulator.configure(status_url_extra="&m2Node=00&mboxPC=123")
    result = client.submit_batch(batch("1,x"))
    assert result.batch_id.startswith(CLIENT)
    client.batch_status(result.status_url)
    client.batch_status(result.status_url, details=False)
    first, second = [r for r in emulator.requests if r["endpoint"] == "batchStatus"]
    assert first["query_keys"] == ["batchId", "m2Node", "mboxPC", "showDetails"]
    assert second["query_keys"] == ["batchId", "m2Node", "mboxPC"]


def test_plain_status_has_no_counts(client):
    status = client.batch_status(client.submit_batch(batch("1,x")).status_url, details=False)
    assert status.state == "complete" and status.batch_size == 1
    assert status.consumed is None and status.successful is None


def test_submit_counts_against_calls_per_minute(client, emulator, clock):
    emulator.configure(calls_per_minute=3)
    urls = [client.submit_batch(batch("1,x")).status_url for _ in range(2)]
    client.batch_status(urls[0])
    assert emulator.max_calls_per_window(CLIENT) == 3
    # The 4th call in the window gets 503s; the fast back-off never leaves the minute, so it gives up.
    with pytest.raises(TargetRetryLater) as caught:
        client.batch_status(urls[1])
    assert caught.value.status == 503
    clock.advance(60)
    assert client.batch_status(urls[1]).state == "complete"


def test_failed_rows_with_reserved_characters_in_ids_parse_in_both_shapes(client, emulator):
    # In Adobe's shape the id goes into <id> with its & raw, like the status URL.
    emulator.configure(fail_ids={"A&B", "C<D"})
    body = batch("A%26B,x", "C%3CD,y", "E,z", header="thirdPartyId,a")
    status = client.batch_status(client.submit_batch(body).status_url)
    assert status.state == "complete" and sorted(status.failed_ids) == ["A&B", "C<D"]
    assert (status.successful, status.failed) == (1, 2)


def test_2017_style_status_without_batch_status_is_followed_to_completion(client, emulator, monkeypatch):
    # Adobe's 2017 v2 example: only per-profile rows, every row listed, no <status> or <batchSize>.
    emulator.configure(profile_format="all", polls_until_complete=1)
    url = client.submit_batch(batch("1,x", "2,y")).status_url
    original = emulator._status

    def without_batch_fields(batch_id, details, cfg):
        code, text = original(batch_id, details, cfg)
        # The batch-level elements come first; the rows' own <status> stay.
        return code, re.sub(r"<(status|batchSize)>[a-z0-9]+</\1>", "", text, count=2)

    monkeypatch.setattr(emulator, "_status", without_batch_fields)
    first = client.batch_status(url, details=False)
    assert (first.raw_status, first.state, first.pending_ids) == ("", "incomplete", ["1", "2"])
    second = client.batch_status(url, details=False)
    assert (second.raw_status, second.state, second.failed_ids) == ("", "complete", [])
