"""XML parsing against the exact payloads of TARGET_API.md, and the odd shapes Target has used."""

from __future__ import annotations

import pytest

from profile_sync.adobe_target.responses import (
    extract_status_url,
    parse_batch_status,
    parse_single_update,
    parse_submit,
)

SUBMIT_OK = """<response>
    <success>true</success>
    <batchStatus>http://mboxedge45.tt.omtrdc.net/m2/demo/profile/batchStatus?batchId=demo-1701473848678-13029383</batchStatus>
    <message>Batch submitted for processing</message>
</response>
"""

STATUS_ONE_LINE = (
    "<response><batchId>demo-1701473848678-13029383</batchId><status>complete</status>"
    "<batchSize>1</batchSize></response>"
)

STATUS_DETAILS_TODAY = """<response>
  <batchId>demo-1701473848678-13029383</batchId>
  <status>complete</status>
  <batchSize>4</batchSize>
  <consumedCount>4</consumedCount>
  <successfulUpdates>2</successfulUpdates>
  <profilesNotFound>0</profilesNotFound>
  <failedUpdates>2</failedUpdates>
  <profile><id>124</id><status>failed</status></profile>
  <profile><id>126</id><status>failed</status></profile>
</response>"""

# 2017-2020: one line, every row listed with success / error / pending.
STATUS_2017 = (
    "<response><batchId>demo-1495638296539-34524</batchId><status>incomplete</status><batchSize>3</batchSize>"
    "<profile><id>123</id><status>success</status></profile><profile><id>124</id><status>error</status></profile>"
    "<profile><id>125</id><status>pending</status></profile></response>"
)

# Legacy v1: the overall status only, ids without a profile counted as profilesNotFound.
STATUS_V1 = """<?xml version="1.0" encoding="UTF-8"?>
<response>
    <batchId>demo-1495638296539-34525</batchId>
    <status>complete</status>
    <batchSize>3</batchSize>
    <consumedCount>3</consumedCount>
    <successfulUpdates>2</successfulUpdates>
    <profilesNotFound>1</profilesNotFound>
    <failedUpdates>0</failedUpdates>
</response>"""


def test_submit_success():
    parsed = parse_submit(SUBMIT_OK)
    assert parsed.success and parsed.parsed
    assert parsed.status_url == (
        "http://mboxedge45.tt.omtrdc.net/m2/demo/profile/batchStatus?batchId=demo-1701473848678-13029383"
    )
    assert parsed.message == "Batch submitted for processing"


def test_submit_error_with_empty_status():
    parsed = parse_submit(
        "<response><success>false</success><batchStatus></batchStatus>"
        "<message>Invalid header</message></response>"
    )
    assert (parsed.success, parsed.status_url, parsed.message, parsed.parsed) == (
        False,
        "",
        "Invalid header",
        True,
    )
    assert parse_submit(b"<response><success>false</success><batchStatus/></response>").status_url == ""


@pytest.mark.parametrize(
    "body", ["", "Service Unavailable", "<html><body>Bad gateway</body></html>", "<response>"]
)
def test_submit_answers_that_are_not_targets(body):
    parsed = parse_submit(body)
    assert not parsed.success and not parsed.parsed


def test_doctype_is_refused():
    body = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><response><success>&a;</success></response>'
    assert not parse_submit(body).parsed


def test_namespaces_and_case_are_tolerated():
    parsed = parse_submit(
        '<r:response xmlns:r="urn:x"><r:Success>TRUE</r:Success><r:batchStatus>u</r:batchStatus></r:response>'
    )
    assert parsed.success and parsed.status_url == "u"


def test_status_one_line_form():
    status = parse_batch_status(STATUS_ONE_LINE)
    assert (status.state, status.batch_id, status.batch_size) == (
        "complete",
        "demo-1701473848678-13029383",
        1,
    )
    assert status.consumed is None and status.successful is None and status.failed is None
    assert status.profiles == [] and status.per_profile_format == "none"


def test_status_with_details_and_failures_only():
    status = parse_batch_status(STATUS_DETAILS_TODAY)
    assert (status.consumed, status.successful, status.not_found, status.failed) == (4, 2, 0, 2)
    assert status.profiles == [("124", "failed"), ("126", "failed")]
    assert status.failed_ids == ["124", "126"] and status.per_profile_format == "failures"
    assert status.raw_status == "complete"


def test_status_2017_all_rows_form():
    status = parse_batch_status(STATUS_2017)
    assert status.state == "incomplete"  # the batch status, not a row's
    assert status.profiles == [("123", "success"), ("124", "failed"), ("125", "pending")]
    assert status.per_profile_format == "all"
    assert status.failed_ids == ["124"] and status.pending_ids == ["125"]


def test_status_legacy_v1_form():
    status = parse_batch_status(STATUS_V1)
    assert (status.state, status.batch_size, status.successful, status.not_found, status.failed) == (
        "complete",
        3,
        2,
        1,
        0,
    )
    assert status.profiles == []


def test_status_rows_in_a_wrapper():
    body = (
        "<response><status>complete</status>"
        "<profiles><profile><id>1</id><status>error</status></profile></profiles></response>"
    )
    status = parse_batch_status(body)
    assert status.state == "complete" and status.profiles == [("1", "failed")]


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        ("<response><status>stuck</status></response>", "stuck"),
        ("<response><status>STUCK</status></response>", "STUCK"),
        ("<response><status>queued</status></response>", "queued"),
        ("<response><batchId>x</batchId></response>", ""),
        ("<response><profile><id>1</id><status>complete</status></profile></response>", ""),
        ("not xml", ""),
        ("", ""),
    ],
)
def test_status_words(body, raw):
    status = parse_batch_status(body)
    assert status.raw_status == raw
    assert status.state == ("stuck" if raw.lower() == "stuck" else "unknown")


def test_unknown_row_word_counts_as_failed_and_bad_counts_as_missing():
    status = parse_batch_status(
        "<response><status>complete</status><batchSize>n/a</batchSize>"
        "<profile><id>9</id><status>weird</status></profile><profile><status>success</status></profile></response>"
    )
    assert status.profiles == [("9", "failed")]
    assert status.batch_size is None


def test_repr_hides_visitor_ids():
    text = repr(parse_batch_status(STATUS_DETAILS_TODAY))
    assert "124" not in text and "126" not in text and "<2 rows>" in text


def test_single_update_xml_and_tag_stripped_forms():
    xml = parse_single_update(
        "<response><success>true</success><pcId></pcId>"
        "<message>Request successfully submitted</message></response>"
    )
    assert (xml.success, xml.message) == (True, "Request successfully submitted")
    stripped = parse_single_update("trueRequest successfully submitted")
    assert (stripped.success, stripped.message) == (True, "Request successfully submitted")
    assert not parse_single_update("falseNo id").success
    garbage = parse_single_update("<html><body>oops</body></html>")
    assert not garbage.success and not garbage.parsed


# ---- every shape Adobe documents or has documented ---------------------------------------------

ADOBE_V2_SUBMIT = (
    "<response> <success>true</success> <batchStatus>http://mboxedge19.tt.omtrdc.net/m2/demo/v2/profile/"
    "batchStatus?batchId=demo-1845664501&m2Node=00</batchStatus> <message>Batch submitted for processing"
    "</message> </response>"
)
ADOBE_V2_URL = (
    "http://mboxedge19.tt.omtrdc.net/m2/demo/v2/profile/batchStatus?batchId=demo-1845664501&m2Node=00"
)


@pytest.mark.parametrize(
    "body",
    [
        ADOBE_V2_SUBMIT,  # Adobe's v2 example, verbatim: one line, raw &
        ADOBE_V2_SUBMIT.replace("&m2Node", "&amp;m2Node"),  # the escaped form
        "\n\n  " + ADOBE_V2_SUBMIT + "  \r\n",  # surrounding whitespace
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ADOBE_V2_SUBMIT,  # a declaration
        ADOBE_V2_SUBMIT.replace("> <", ">\n \n<"),  # lines holding a single space between elements
        ADOBE_V2_SUBMIT.replace("> <", ">\n    <").replace("true", "TRUE"),  # pretty, upper case
        ADOBE_V2_SUBMIT.replace("&m2Node=00", "&m2Node=00&mboxPC=1&x=a&b"),  # more params, raw &
        ADOBE_V2_SUBMIT.encode("utf-8"),
        b"\xef\xbb\xbf" + ADOBE_V2_SUBMIT.encode(),  # a UTF-8 byte order mark
    ],
)
def test_submit_answer_shapes_of_adobes_docs(body):
    parsed = parse_submit(body)
    assert parsed.parsed and parsed.success
    assert parsed.status_url.startswith(ADOBE_V2_URL)
    assert parsed.message == "Batch submitted for processing"


def test_submit_raw_amp_keeps_entities_that_are_entities():
    parsed = parse_submit(
        "<response><success>true</success><batchStatus>https://h.tt.omtrdc.net/m2/d/profile/batchStatus?"
        "batchId=1&amp;a=1&b=2&#38;c=3</batchStatus><message>x &lt; y & z</message></response>"
    )
    assert parsed.status_url == "https://h.tt.omtrdc.net/m2/d/profile/batchStatus?batchId=1&a=1&b=2&c=3"
    assert parsed.message == "x < y & z"


@pytest.mark.parametrize(
    ("body", "url"),
    [
        (ADOBE_V2_SUBMIT, ADOBE_V2_URL),
        (ADOBE_V2_SUBMIT.replace("&m2Node", "&amp;m2Node"), ADOBE_V2_URL),
        # Truncated, or not XML at all: still found.
        (ADOBE_V2_SUBMIT[: ADOBE_V2_SUBMIT.index("</batchStatus>") + 5], ADOBE_V2_URL),
        (ADOBE_V2_SUBMIT[: ADOBE_V2_SUBMIT.index("</batchStatus>") - 3], ""),  # cut inside the URL
        ("<html>accepted: " + ADOBE_V2_URL + " </html>", ADOBE_V2_URL),
        ("true " + ADOBE_V2_URL + " Batch submitted for processing", ADOBE_V2_URL),  # tag-stripped
        ("<html><body>Bad gateway</body></html>", ""),
        ("", ""),
        (b"\xff\xfe\x00garbage", ""),
    ],
)
def test_extract_status_url_from_any_body(body, url):
    assert extract_status_url(body) == url


def test_utf16_doctype_is_refused():
    # A UTF-16 body used to get past a byte search for "<!DOCTYPE".
    body = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "true">]>'
        "<response><success>&a;</success></response>"
    )
    assert not parse_submit(body.encode("utf-16")).parsed
    assert parse_batch_status(body.encode("utf-16")).state == "unknown"


def test_entity_expansion_is_refused_without_doctype_check():
    body = '<!DOCTYPE r [<!ENTITY a "x">]>\n<response><status>complete</status></response>'
    assert parse_batch_status(body).state == "unknown"


# The 2017 v2 example: no batch-level status, no batchSize, every row listed.
STATUS_2017_COMPLETE = (
    "<response><batchId>demo-1845664501</batchId>"
    "<profile><id>1436187396849-250353.03_03</id><status>success</status></profile> "
    "<profile><id>2403081156529-351655.03_03</id><status>success</status></profile> "
    "<profile><id>2403081156529-351656.03_03</id><status>error</status></profile> "
    "<profile><id>1436187396849-250351.01_00</id><status>success</status></profile></response>"
)


def test_status_2017_without_batch_status_is_complete_when_every_row_is_final():
    status = parse_batch_status(STATUS_2017_COMPLETE)
    assert status.state == "complete" and status.raw_status == ""
    assert status.failed_ids == ["2403081156529-351656.03_03"] and status.per_profile_format == "all"


@pytest.mark.parametrize(
    ("body", "expected_rows", "state"),
    [
        # A row still pending: not complete.
        (STATUS_2017_COMPLETE.replace("error", "PENDING"), None, "incomplete"),
        # Only failed rows, nothing else: they may be today's "failures only" list mid-way.
        ("<response><profile><id>1</id><status>failed</status></profile></response>", None, "unknown"),
        # ... unless the caller knows the batch had exactly these rows.
        ("<response><profile><id>1</id><status>failed</status></profile></response>", 1, "complete"),
        ("<response><profile><id>1</id><status>failed</status></profile></response>", 2, "unknown"),
        # Counters that account for the whole batch, or not yet.
        (
            "<response><batchSize>3</batchSize><successfulUpdates>2</successfulUpdates>"
            "<failedUpdates>1</failedUpdates><profilesNotFound>0</profilesNotFound></response>",
            None,
            "complete",
        ),
        (
            "<response><batchSize>3</batchSize><successfulUpdates>1</successfulUpdates>"
            "<failedUpdates>1</failedUpdates></response>",
            None,
            "incomplete",
        ),
        # Counters without a size prove nothing.
        ("<response><successfulUpdates>3</successfulUpdates></response>", None, "unknown"),
        # An explicit word always wins, in any case and with whitespace.
        ("<response>\n <status> Complete </status>\n</response>", None, "complete"),
        (
            "<response><status>InComplete</status><profile><id>1</id><status>success</status></profile></response>",
            None,
            "incomplete",
        ),
    ],
)
def test_status_state_without_or_with_batch_word(body, expected_rows, state):
    assert parse_batch_status(body, expected_rows=expected_rows).state == state


def test_status_body_batch_id_may_differ_from_url_and_rows_accept_failed_or_error():
    status = parse_batch_status(
        "<response><batchId>demo-OTHER</batchId><status>COMPLETE</status>"
        "<profile><id>a</id><status>FAILED</status></profile><profile><id>b</id><status>Error</status></profile>"
        "</response>"
    )
    assert status.batch_id == "demo-OTHER" and status.state == "complete"
    assert status.failed_ids == ["a", "b"]


def test_status_pretty_with_raw_amp_in_a_message():
    status = parse_batch_status(
        '<?xml version="1.0"?>\n<response>\n \n  <status>complete</status>\n \n'
        "  <message>ok & done</message>\n</response>\n"
    )
    assert status.state == "complete" and status.message == "ok & done"
