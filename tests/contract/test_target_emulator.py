"""The emulator's own surface: CLI switches, run-time switches, lifecycle."""

from __future__ import annotations

import argparse
import re
import xml.etree.ElementTree as ET

import pytest
import requests

from profile_sync_local.emulator import (
    EmulatorConfig,
    TargetEmulator,
    add_arguments,
    config_from_args,
    run_from_args,
)


@pytest.mark.parametrize(
    ("switch", "message"),
    [
        ("--fail-share=3", "fail_share must be between 0 and 1"),
        ("--calls-per-minute=-1", "must be 0 or more"),
    ],
)
def test_a_bad_switch_is_one_line_and_exit_2_not_a_traceback(capsys, switch, message):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_from_args(parser.parse_args([switch])) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_switches_map_to_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--port=0",
            "--require-auth",
            "--token=t1",
            "--token=t2",
            "--calls-per-minute=50",
            "--polls-until-complete=2",
            "--seconds-until-complete=30",
            "--stuck-share=0.1",
            "--fail-ids=a,b",
            "--fail-share=0.01",
            "--vanish-share=0.2",
            "--vanish-after-polls=1",
            "--vanish-style=empty",
            "--keep-statuses=10",
            "--profile-format=all",
            "--status-url-extra=&m2Node=00",
            "--delay=0.1",
            "--error-500-share=0.05",
            "--drop-share=0.05",
            "--max-rows=10",
            "--max-bytes=1000",
            "--single-get-max-bytes=100",
            "--single-post-max-bytes=200",
            "--reject-http-status=400",
            "--seed=5",
            "--escaped-xml",
            "--status-url-base=https://status.example.com",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.escaped_xml and cfg.status_url_base == "https://status.example.com"
    assert not config_from_args(parser.parse_args([])).escaped_xml  # Adobe's shape by default
    assert cfg.require_auth and cfg.valid_tokens == {"t1", "t2"}
    assert (cfg.calls_per_minute, cfg.polls_until_complete, cfg.seconds_until_complete) == (50, 2, 30)
    assert cfg.fail_ids == {"a", "b"} and cfg.profile_format == "all" and cfg.vanish_style == "empty"
    assert (cfg.max_rows, cfg.max_bytes, cfg.single_get_max_bytes, cfg.single_post_max_bytes) == (
        10,
        1000,
        100,
        200,
    )
    assert (cfg.reject_http_status, cfg.seed, cfg.keep_statuses) == (400, 5, 10)


def test_run_from_args_serves_until_stopped(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    seen = {}

    def ready(emulator):
        seen["status"] = requests.get(f"{emulator.url}/rest/v1/profiles/1?client=demo", timeout=5).status_code
        emulator.stop()

    assert run_from_args(parser.parse_args(["--port=0"]), ready=ready) == 0
    assert seen["status"] == 404
    assert "Target emulator on http://127.0.0.1:" in capsys.readouterr().out


def test_config_checks():
    with pytest.raises(ValueError, match="loopback"):
        EmulatorConfig(host="0.0.0.0")
    with pytest.raises(ValueError):
        EmulatorConfig(fail_share=2)
    with pytest.raises(ValueError):
        EmulatorConfig(profile_format="some")


def test_run_time_switches_and_lifecycle():
    emulator = TargetEmulator()
    with pytest.raises(RuntimeError):
        _ = emulator.url
    with emulator:
        assert emulator.url.startswith("http://127.0.0.1:")
        emulator.configure(fail_ids=["x"], calls_per_minute=5)
        assert emulator.config.fail_ids == frozenset({"x"}) and emulator.config.calls_per_minute == 5
        with pytest.raises(ValueError):
            emulator.queue_faults("batchUpdate", "teapot")
        with pytest.raises(ValueError):
            emulator.queue_faults("nowhere", "500")
        emulator.queue_faults("*", "500")
        assert requests.get(f"{emulator.url}/rest/v1/profiles/1?client=demo", timeout=5).status_code == 500
        assert requests.get(f"{emulator.url}/nothing", timeout=5).status_code == 404
        assert emulator.calls["profiles"] == 1 and emulator.calls["unknown"] == 1
        emulator.reset()
        assert not emulator.calls and not emulator.requests
    emulator.stop()  # idempotent


ADOBE_V2_SHAPE = re.compile(
    r"<response> <success>true</success> <batchStatus>http://127\.0\.0\.1:\d+/m2/demo/v2/profile/"
    r"batchStatus\?batchId=demo-[\d-]+&m2Node=00</batchStatus> "
    r"<message>Batch submitted for processing</message> </response>"
)


def test_default_answers_take_the_shape_of_adobes_examples():
    with TargetEmulator(EmulatorConfig(seed=1)) as emu:
        answer = requests.post(
            f"{emu.url}/m2/demo/v2/profile/batchUpdate", data=b"batch=pcId,a\n1,x\n", timeout=5
        )
        assert ADOBE_V2_SHAPE.fullmatch(answer.text), answer.text  # one line, a raw & (not well-formed)
        url = re.search(r"<batchStatus>(.*)</batchStatus>", answer.text).group(1)
        status = requests.get(url + "&showDetails=true", timeout=5).text
        assert status.startswith("<response> <batchId>demo-") and "\n" not in status


def test_escaped_xml_switch_gives_pretty_well_formed_answers():
    with TargetEmulator(EmulatorConfig(seed=1, escaped_xml=True)) as emu:
        answer = requests.post(
            f"{emu.url}/m2/demo/v2/profile/batchUpdate", data=b"batch=pcId,a\n1,x\n", timeout=5
        )
        assert answer.text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<response>\n    <success>true')
        assert "&amp;m2Node=00</batchStatus>" in answer.text and "&m2Node" not in answer.text
        ET.fromstring(answer.content)  # well-formed


def test_accept_faults_apply_to_batch_update_only():
    with TargetEmulator(EmulatorConfig()) as emu:
        with pytest.raises(ValueError, match="only applies to batchUpdate"):
            emu.queue_faults("batchStatus", "accept_drop")
        with pytest.raises(ValueError, match="only applies to batchUpdate"):
            emu.queue_faults("*", "accept_stall")
