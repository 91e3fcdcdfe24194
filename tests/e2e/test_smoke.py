"""`make smoke`: its parts that need no deployed stack (it never runs in `make test`)."""

from __future__ import annotations

import pytest

from profile_sync_local import smoke


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_without_credentials_it_is_skipped_with_a_message_and_sends_nothing(
    no_credentials, monkeypatch, capsys
):
    monkeypatch.setattr(smoke, "cli", lambda *a: pytest.fail("must not run the CLI"))
    assert smoke.main(["--stack", "target-profile-sync", "--client", "acme"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("smoke: SKIPPED: no AWS credentials")
    assert "Nothing was sent" in out


def test_with_credentials_the_check_passes_them(monkeypatch):
    # The autouse fixture's fake keys: resolved locally, nothing called.
    assert smoke.credentials_problem() is None


def test_the_sample_account_is_checked_row_for_row():
    good = {
        "status": "COMPLETE_WITH_ERRORS",
        "account": {"received": 16, "rejected": 5, "skipped": 1, "succeeded": 9, "failed": 1},
    }
    assert smoke.check_account(good) == []
    lost = {**good, "account": {**good["account"], "succeeded": 8}}
    assert smoke.check_account(lost) == ["succeeded+failed+not_found+pending = 9, expected 10"]
    failed = {**good, "status": "FAILED"}
    assert "status FAILED" in smoke.check_account(failed)[0]
