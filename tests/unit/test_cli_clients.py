"""profile-sync clients list / show / set / check, and --client-profile of validate and run."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from profile_sync_local.cli import main
from profile_sync_local.deployed.resources import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "local" / "samples"
REGION = "us-east-1"
PATH = "/target-profile-sync/clients"
PREFIX = "profile-sync/clients/"
SALESFORCE = SAMPLES / "salesforce_contacts_eu.profile.json"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def deployed():
    """A stack in moto's CloudFormation whose Outputs name the profiles' path and secrets folder."""
    with mock_aws():
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {
                "ClientProfilesPath": {"Value": PATH},
                "ClientTokenSecretPrefix": {"Value": PREFIX},
            },
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="target-profile-sync", TemplateBody=json.dumps(template)
        )
        yield boto3.client("ssm", region_name=REGION)


def write(tmp_path: Path, document: dict, name: str = "p.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_set_show_list_and_a_new_version_each_time(deployed, tmp_path, capsys):
    code, out, err = run(capsys, "clients", "set", "acme-eu", "--file", str(SALESFORCE))
    assert (code, err) == (EXIT_OK, "")
    assert f"saved acme-eu v1 ({PATH}/acme-eu)" in out
    assert json.loads(deployed.get_parameter(Name=f"{PATH}/acme-eu")["Parameter"]["Value"]) == json.loads(
        SALESFORCE.read_text()
    )
    code, out, _ = run(capsys, "clients", "set", "acme-eu", "--file", str(SALESFORCE))
    assert "saved acme-eu v2" in out
    run(capsys, "clients", "set", "acme-us", "--file", write(tmp_path, {"daily_row_quota": 10}))

    code, out, _ = run(capsys, "clients", "show", "acme-eu", "--json")
    assert code == EXIT_OK
    shown = json.loads(out)
    assert (shown["client"], shown["version"], shown["profile"]["separator"]) == ("acme-eu", 2, ";")
    code, out, _ = run(capsys, "clients", "show", "acme-eu")
    assert out.startswith("# acme-eu v2 (") and '"encoding": "windows-1252"' in out

    code, out, _ = run(capsys, "clients", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["client", "version", "modified", "account", "encoding", "sep", "api", "mode"]
    assert lines[1].split()[:2] == ["acme-eu", "v2"] and lines[1].split()[4:6] == ["windows-1252", ";"]
    assert lines[2].split()[:2] == ["acme-us", "v1"]
    code, out, _ = run(capsys, "clients", "list", "--json")
    assert set(json.loads(out)) == {"acme-eu", "acme-us"}


def test_show_a_client_without_a_profile_says_the_defaults_apply(deployed, capsys):
    code, out, err = run(capsys, "clients", "show", "nobody")
    assert code == EXIT_NOT_FOUND and out == ""
    assert "client nobody has no profile" in err and "stack's defaults" in err
    code, out, _ = run(capsys, "clients", "list")
    assert "no client profiles under" in out


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"rename": {"Loyalty Tier": "loyalty tier"}}, "column 2 name is not URL-encoded: raw space"),
        ({"separator": ":"}, "separator must be one of"),
        ({"token_secret_id": "somewhere/else"}, "may read only secrets under 'profile-sync/clients/'"),
    ],
)
def test_set_refuses_a_bad_profile_and_saves_nothing(deployed, tmp_path, capsys, document, message):
    code, out, err = run(capsys, "clients", "set", "acme", "--file", write(tmp_path, document))
    assert code == EXIT_ERROR and out == ""
    assert message in err and "nothing saved" in err
    assert "Traceback" not in err
    assert deployed.get_parameters_by_path(Path=PATH)["Parameters"] == []


def test_set_refuses_clients_of_one_account_that_disagree_on_its_budget(deployed, tmp_path, capsys):
    run(
        capsys,
        "clients",
        "set",
        "brand-a",
        "--file",
        write(tmp_path, {"account": "agency", "daily_row_quota": 5}),
    )
    code, _, err = run(
        capsys,
        "clients",
        "set",
        "brand-b",
        "--file",
        write(tmp_path, {"account": "agency", "daily_row_quota": 6}),
    )
    assert code == EXIT_ERROR
    assert "account 'agency' is shared with brand-a, whose profile says daily_row_quota 5, this one 6" in err
    code, _, _ = run(
        capsys,
        "clients",
        "set",
        "brand-b",
        "--file",
        write(tmp_path, {"account": "agency", "daily_row_quota": 5}),
    )
    assert code == EXIT_OK


def test_a_profile_secret_needs_the_stack_to_allow_a_folder(tmp_path, capsys):
    with mock_aws():
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"ClientProfilesPath": {"Value": PATH}, "ClientTokenSecretPrefix": {"Value": ""}},
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="target-profile-sync", TemplateBody=json.dumps(template)
        )
        code, _, err = run(
            capsys, "clients", "set", "acme", "--file", write(tmp_path, {"token_secret_id": "profile-sync/x"})
        )
    assert code == EXIT_ERROR
    assert "its ClientTokenSecretPrefix is empty" in err


def test_check_prints_the_header_the_rows_and_the_account_without_aws(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # any AWS call would fail
    code, out, err = run(
        capsys, "clients", "check", str(SAMPLES / "salesforce_contacts_eu.csv"), "--file", str(SALESFORCE)
    )
    assert (code, err) == (EXIT_OK, "")
    assert "header Target gets: thirdPartyId,loyaltyTier,preferredStore,lastPurchaseDate,lifetimeValue" in out
    assert "  0035g00000AbCdE1,Gold,M%C3%BCnchen%2C%20Marienplatz,2026-11-28,1.249%2C90,salesforce" in out
    assert (
        "row account: received 8 = accepted 5 + rejected 2 (invalid_text_encoding: 1, too_many_fields: 1) "
        "+ skipped 1"
    ) in out
    assert "line 9: invalid_text_encoding: byte 0x81" in out
    assert out.rstrip().endswith("nothing was sent")


def test_check_of_a_file_the_profile_does_not_fit(tmp_path, capsys):
    sample = tmp_path / "s.csv"
    sample.write_bytes(b"Id,Tier\n1,gold\n")
    code, out, _ = run(capsys, "clients", "check", str(sample), "--file", str(SALESFORCE))
    assert code == EXIT_ERROR
    assert out.startswith("REJECTED ") and "id column 'Contact ID' is not in the file's header" in out


def test_validate_with_a_client_profile(tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, _ = run(
        capsys,
        "validate",
        str(SAMPLES / "excel_unicode_text.txt"),
        "--client-profile",
        str(SAMPLES / "excel_unicode_text.profile.json"),
        "--out",
        str(out_dir),
        "--json",
    )
    result = json.loads(out)
    assert code == EXIT_OK
    assert (result["received"], result["accepted"], result["rejected"], result["skipped"]) == (6, 4, 1, 1)
    assert (out_dir / "batch-00001.txt").read_text().startswith("batch=thirdPartyId,segment,newsletterOptIn")
    # --input-mode given wins over the profile's raw mode: the names stay, the values must be encoded.
    code, out, _ = run(
        capsys,
        "validate",
        str(SAMPLES / "excel_unicode_text.txt"),
        "--client-profile",
        str(SAMPLES / "excel_unicode_text.profile.json"),
        "--input-mode",
        "encoded",
        "--out",
        str(out_dir),
        "--json",
    )
    assert json.loads(out)["reasons"]["invalid_encoding"] >= 1


def test_validate_with_a_bad_profile_is_one_line(tmp_path, capsys):
    code, out, err = run(
        capsys, "validate", str(SAMPLES / "visitors.csv"), "--client-profile", write(tmp_path, {"drop": "x"})
    )
    assert code == 2 and out == ""
    assert "profile refused" in err and "drop must be array" in err
