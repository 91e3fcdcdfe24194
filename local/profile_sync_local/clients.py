"""`profile-sync clients list | show | set | check`: the client profiles of a deployed stack.

Profiles are SSM parameters `<ClientProfilesPath>/<clientCode>` (the stack's Output, or
--path). `set` validates the file first (JSON Schema, then the engine's header rules on the mapped
header, the stack's folder of token secrets, and the budget of a shared account) and saves nothing
when anything is wrong. `check` needs no AWS: it maps a sample file as the ingest would and prints
what Target would get, sending nothing.

Exit codes as the other deployed commands: 0 done, 1 not found, 2 refused or any other error.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

from profile_sync.client_profiles import ClientProfile, ProfileInvalid, parse_profile, validate_with_profile
from profile_sync.ingest import CLIENT_CODE
from profile_sync.settings import Settings
from profile_sync_local.deployed.resources import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    CliError,
    Deployed,
    connect,
    guarded,
    stack_options,
)
from profile_sync_local.subcommands import Command

BUDGET = ("daily_row_quota", "calls_per_minute")


def _path(deployed: Deployed, args: argparse.Namespace) -> str:
    return (args.path or deployed.output("ClientProfilesPath", "--path")).rstrip("/")


def _code(code: str) -> str:
    if not CLIENT_CODE.match(code):
        raise CliError(f"{code!r} is not a valid Target client code (letters, digits, - and _)")
    return code


def _all(ssm, path: str) -> dict[str, dict]:
    """client code -> {"version", "modified", "document" (None when not JSON)}."""
    found: dict[str, dict] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=False):
        for parameter in page["Parameters"]:
            try:
                document = json.loads(parameter["Value"])
            except ValueError:
                document = None
            found[parameter["Name"].rsplit("/", 1)[1]] = {
                "version": parameter["Version"],
                "modified": parameter["LastModifiedDate"].isoformat(timespec="seconds"),
                "document": document,
            }
    return found


@guarded
def cmd_list(args: argparse.Namespace) -> int:
    deployed = connect(args)
    path = _path(deployed, args)
    profiles = _all(deployed.session.client("ssm"), path)
    if args.json:
        print(json.dumps(profiles, indent=2, default=str))
        return EXIT_OK
    if not profiles:
        print(f"no client profiles under {path}: every client gets the stack's defaults")
        return EXIT_OK
    columns = ("client", "version", "modified", "account", "encoding", "sep", "api", "mode")
    rows = [columns]
    for code, found in sorted(profiles.items()):
        d = found["document"] or {}
        rows.append(
            (
                code,
                f"v{found['version']}",
                found["modified"],
                d.get("account", code),
                d.get("encoding", "utf-8"),
                {"\t": "tab"}.get(d.get("separator", ","), d.get("separator", ",")),
                d.get("api_version", "-"),
                d.get("input_mode", "-"),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


@guarded
def cmd_show(args: argparse.Namespace) -> int:
    deployed = connect(args)
    name = f"{_path(deployed, args)}/{_code(args.client)}"
    ssm = deployed.session.client("ssm")
    try:
        parameter = ssm.get_parameter(Name=name)["Parameter"]
    except ssm.exceptions.ParameterNotFound:
        raise CliError(
            f"client {args.client} has no profile ({name}): its drops get the stack's defaults",
            EXIT_NOT_FOUND,
        ) from None
    document = json.loads(parameter["Value"])
    if args.json:
        print(
            json.dumps(
                {"client": args.client, "version": parameter["Version"], "profile": document}, indent=2
            )
        )
    else:
        modified = parameter["LastModifiedDate"].isoformat(timespec="seconds")
        print(f"# {args.client} v{parameter['Version']} ({name}, saved {modified})")
        print(json.dumps(document, indent=2, ensure_ascii=False))
    return EXIT_OK


def _read_profile(file: str, client: str) -> tuple[bytes, ClientProfile]:
    try:
        text = Path(file).read_bytes()
    except OSError as exc:
        raise CliError(f"{file}: {exc.strerror}", EXIT_NOT_FOUND) from exc
    try:
        return text, parse_profile(text, client)
    except ProfileInvalid as exc:
        problems = "\n  ".join(exc.problems)
        raise CliError(f"{file}: profile refused, nothing saved:\n  {problems}") from exc


@guarded
def cmd_set(args: argparse.Namespace) -> int:
    client = _code(args.client)
    text, profile = _read_profile(args.file, client)
    deployed = connect(args)
    path = _path(deployed, args)
    secret = profile.document.get("token_secret_id")
    if secret:
        prefix = args.secret_prefix
        if prefix is None:
            prefix = deployed.output("ClientTokenSecretPrefix", "--secret-prefix")
        if not prefix or not secret.startswith(prefix):
            where = f"under {prefix!r}" if prefix else "of their own (its ClientTokenSecretPrefix is empty)"
            raise CliError(
                f"{args.file}: token_secret_id {secret!r}: the stack's functions may read only secrets "
                f"{where}; put the token there, or deploy with ClientTokenSecretPrefix set; nothing saved"
            )
    ssm = deployed.session.client("ssm")
    # Clients that share an account share its budget: their profiles must agree on it.
    for other, found in _all(ssm, path).items():
        d = found["document"] or {}
        if other == client or d.get("account", other) != profile.account:
            continue
        for name in BUDGET:
            if name in d and name in profile.document and d[name] != profile.document[name]:
                raise CliError(
                    f"{args.file}: account {profile.account!r} is shared with {other}, whose profile says "
                    f"{name} {d[name]}, this one {profile.document[name]}; clients of one account share "
                    "one budget, so give both the same figure; nothing saved"
                )
    answer = ssm.put_parameter(
        Name=f"{path}/{client}", Value=text.decode("utf-8"), Type="String", Overwrite=True, Tier="Standard"
    )
    print(f"saved {client} v{answer['Version']} ({path}/{client}); functions read it within the cache age")
    return EXIT_OK


@guarded
def cmd_check(args: argparse.Namespace) -> int:
    _, profile = _read_profile(args.file, args.client)
    settings = profile.settings(Settings())
    with tempfile.TemporaryDirectory() as out, open(args.sample, "rb") as sample:
        result = validate_with_profile(sample, Path(out), settings, profile, source_name=args.sample)
        if result.file_error:
            print(f"REJECTED {result.file_error}")
            return EXIT_ERROR
        shown: list[str] = []
        for batch in result.batches:
            with open(batch.path, encoding="utf-8") as body:
                for line in body:
                    if len(shown) > args.rows:
                        break
                    shown.append(line.rstrip("\n"))
            if len(shown) > args.rows:
                break
        with open(Path(out) / "rejects.csv", encoding="utf-8") as rejects:
            rejected = sorted(csv.DictReader(rejects), key=lambda r: int(r["line"]))
    header = shown[0].removeprefix("batch=") if shown else "(no row accepted)"
    print(f"{args.sample} with profile {args.file} ({settings.input_mode} mode, API {settings.api_version})")
    print(f"header Target gets: {header}")
    if len(shown) > 1:
        print(f"first {len(shown) - 1} rows as sent:")
        for line in shown[1:]:
            print(f"  {line}")
    reasons = ", ".join(f"{code}: {count}" for code, count in sorted(result.reasons.items()))
    print(
        f"row account: received {result.received} = accepted {result.accepted} + rejected {result.rejected}"
        + (f" ({reasons})" if reasons else "")
        + f" + skipped {result.skipped}"
    )
    for row in rejected[: args.rows]:
        print(f"  line {row['line']}: {row['reason']}: {row['detail']}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print("nothing was sent")
    return EXIT_OK


def load_local_profile(file: str, client: str) -> ClientProfile:
    """`--client-profile` of validate and run: the profile, or a one-line refusal (CliError)."""
    return _read_profile(file, client)[1]


def _aws_arguments(parser: argparse.ArgumentParser) -> None:
    stack_options(parser)
    parser.add_argument("--path", help="SSM path of the profiles (default: the stack's ClientProfilesPath)")


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    _aws_arguments(parser)


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client", help="Target client code")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    _aws_arguments(parser)


def _set_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client", help="Target client code")
    parser.add_argument("--file", required=True, help="the profile (JSON)")
    parser.add_argument(
        "--secret-prefix", help="token secrets folder (default: the stack's ClientTokenSecretPrefix output)"
    )
    _aws_arguments(parser)


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sample", help="a sample export (CSV, any supported encoding and separator)")
    parser.add_argument("--file", required=True, help="the profile (JSON)")
    parser.add_argument("--client", default="demo", help="client code the profile is for (default demo)")
    parser.add_argument("--rows", type=int, default=5, help="rows and rejects to show (default 5)")


CLIENTS = Command(
    "clients",
    "client profiles: how each client's exports are read and sent",
    description="Client profiles of the deployed stack (SSM parameters under its ClientProfilesPath): "
    "list, show and set them; check a profile against a sample file without AWS.",
    subcommands=(
        Command("list", "every client with a profile", cmd_list, _list_arguments),
        Command("show", "one client's profile and its version", cmd_show, _show_arguments),
        Command(
            "set",
            "validate a profile and save it as the client's new version",
            cmd_set,
            _set_arguments,
            description="Validate FILE (schema, the mapped header under the engine's rules, the stack's "
            "folder of token secrets, the budget of a shared account) and save it; nothing is saved when "
            "anything is wrong. The functions read the new version within ClientProfilesMaxAgeSeconds.",
        ),
        Command(
            "check",
            "what a sample file becomes under a profile, sending nothing",
            cmd_check,
            _check_arguments,
            description="Map SAMPLE with the profile as the ingest would: print the header Target would "
            "get, the first rows as they would be sent, the row account and the first rejects. No AWS, "
            "no Target.",
        ),
    ),
)
"""`clients list | show | set | check`."""
