"""`profile-sync run`: the whole pipeline on this machine; its options, each checked before anything runs."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import signal
import stat
import sys
from dataclasses import fields
from pathlib import Path

from profile_sync.adobe_target.errors import TargetRejected
from profile_sync.adobe_target.urls import require_secure
from profile_sync.ingest import CLIENT_CODE
from profile_sync.redrive import CHOICES, DEFAULT_ONLY, parse_only
from profile_sync.settings import INPUT_MODES, Settings
from profile_sync_local import clients, emulator
from profile_sync_local.cli.options import EXIT_USAGE, UsageError, make_out_dir
from profile_sync_local.deployed.resources import CliError
from profile_sync_local.subcommands import Command

TOKEN_ENV = "PROFILE_SYNC_TARGET_TOKEN"  # noqa: S105 - the name of a variable
OAUTH_KEYS = ("client_id", "client_secret", "tenant")
# Settings the run sets itself from its options.
_SET_BY_OPTION = {"TARGET_BASE_URL": "--target-url", "TOKEN_SECRET_ID": "--token-file or --oauth-file"}
# The emulator switches and their defaults: given with --target-url they would do nothing.
_SWITCH_DEFAULTS = {
    "fail_share": 0.0,
    "lose_share": 0.0,
    "visibility_seconds": 0.0,
    "stuck_share": 0.0,
    "polls_until_complete": 2,
    "processing_seconds": 0.0,
    "throttle_per_minute": 0,
    "seed": 1,
    "auth": "none",
    "stuck_batches": 0,
    "vanish_batches": 0,
}


def cmd_run(args: argparse.Namespace) -> int:
    # Imported here: moto and the local stack load only for this command.
    from profile_sync_local import run  # noqa: PLC0415

    source = Path(args.file)
    if not source.is_file():
        print(f"profile-sync: {source}: no such file", file=sys.stderr)
        return run.EXIT_FAILED
    try:
        if not CLIENT_CODE.match(args.client):  # as `submit` checks it; a '/' would name a folder
            raise UsageError(
                f"--client {args.client!r} is not a valid Target client code (letters, digits, - and _)"
            )
        settings_env = parse_sets(args.set or [])
        redrive = _redrive(args, settings_env)
        credentials = _credentials(args)
        _check_target(args)
        client_profile = _client_profile(args)
        out_dir = Path(args.out) if args.out else Path("out") / source.name.split(".")[0]
        make_out_dir(out_dir)
    except UsageError as exc:
        print(f"profile-sync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = emulator.EmulatorConfig(
            seed=args.seed,
            fail_share=args.fail_share,
            lose_share=args.lose_share,
            visibility_seconds=args.visibility_seconds,
            stuck_share=args.stuck_share,
            stuck_batches=args.stuck_batches,
            vanish_batches=args.vanish_batches,
            polls_until_complete=args.polls_until_complete,
            seconds_until_complete=args.processing_seconds,
            calls_per_minute=args.throttle_per_minute,
            escaped_xml=args.escaped_xml,
        )
    except ValueError as exc:  # a share outside 0..1, a negative count: a bad option, nothing ran
        print(f"profile-sync: emulator switches: {exc}", file=sys.stderr)
        return EXIT_USAGE
    previous = signal.signal(signal.SIGINT, _stop_now)
    try:
        result = run.run_local(
            source,
            out_dir=out_dir,
            client=args.client,
            api=args.api,
            input_mode=args.input_mode,
            target_url=args.target_url,
            emulator_config=config,
            settings_env=settings_env,
            progress_stream=sys.stderr,  # stdout keeps the summary (or the JSON) alone
            auth=args.auth,
            credentials=credentials,
            clock=args.clock,
            client_profile=client_profile,
            delta=args.delta,
            state_dir=Path(args.state) if args.state else None,
            redrive=redrive,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    print(json.dumps(result, indent=2) if args.json else run.format_result(result))
    return run.exit_code(result)


def _redrive(args: argparse.Namespace, settings_env: dict[str, str]) -> tuple[str, ...]:
    """--redrive [failed,pending,not_found]: which rows to re-drive once after the job (none: ())."""
    if args.redrive is None:
        return ()
    if settings_env.get("REDRIVE_PENDING_AUTO", "0") != "0":
        raise UsageError(
            "--redrive and --set REDRIVE_PENDING_AUTO=1 both re-drive the job: give one "
            "(with the setting, the run follows Finalize's own re-drive of the pending rows)"
        )
    try:
        return parse_only([args.redrive])
    except ValueError as exc:
        raise UsageError(str(exc).replace("--only", "--redrive")) from None


def _client_profile(args: argparse.Namespace) -> dict | None:
    if not args.client_profile:
        return None
    try:
        return clients.load_local_profile(args.client_profile, args.client).document
    except CliError as exc:
        raise UsageError(str(exc)) from exc


def _stop_now(signum: int, frame: object) -> None:
    """Ctrl-C: stop at once. Unwinding would leave the steps' threads running on without the local
    AWS (and with the user's real AWS environment back), still calling Target."""
    sys.stderr.write(
        "\nprofile-sync: interrupted: batches already uploaded stay with Target and will be applied; "
        "this run's records and report end here\n"
    )
    sys.stderr.flush()
    os._exit(130)


def parse_sets(items: list[str]) -> dict[str, str]:
    """--set NAME=VALUE options as environment variables, each checked as the functions read it."""
    names = {field.name.upper() for field in fields(Settings)}
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not name:
            raise UsageError(f"--set {item!r}: expected NAME=VALUE, e.g. BATCH_MAX_ROWS=2000")
        if name in _SET_BY_OPTION:
            raise UsageError(f"--set {name}: use {_SET_BY_OPTION[name]}")
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(sorted(names - set(_SET_BY_OPTION)))
            raise UsageError(f"--set {name}: no such setting{hint}; settings: {known}")
        values[name] = value.strip()
    try:
        settings = Settings.from_env(values)
    except ValueError as exc:
        raise UsageError(f"--set: {exc}") from None
    for field in fields(Settings):
        value = getattr(settings, field.name)
        if isinstance(value, int | float) and value < 0:
            raise UsageError(f"--set {field.name.upper()}={value}: must be 0 or more")
    return values


def _credentials(args: argparse.Namespace) -> dict | None:
    """The secret the functions will read: a profile token or OAuth server-to-server credentials."""
    if args.token_file and args.oauth_file:
        raise UsageError("give --token-file or --oauth-file, not both")
    if (args.token_file or args.oauth_file) and args.auth != "none":
        raise UsageError("--auth makes the built-in emulator mint its own credentials: drop it or the file")
    if args.oauth_file:
        if not args.target_url:
            # Its IMS and token URLs point at Adobe: the built-in emulator can't answer them.
            raise UsageError("--oauth-file needs --target-url (the built-in emulator: --auth oauth)")
        text = _read_private(Path(args.oauth_file))
        try:
            value = json.loads(text)
        except ValueError:
            raise UsageError(f"{args.oauth_file}: not JSON") from None
        if not isinstance(value, dict):
            raise UsageError(f"{args.oauth_file}: expected a JSON object")
        missing = [key for key in OAUTH_KEYS if not value.get(key)]
        if missing:
            raise UsageError(
                f"{args.oauth_file}: missing {', '.join(missing)} (needs {', '.join(OAUTH_KEYS)})"
            )
        for key in ("ims_url", "token_url"):
            if value.get(key):
                _require_secure(str(value[key]).replace("{tenant}", "tenant"), f"{args.oauth_file}: {key}")
        return value
    if args.token_file:
        token = _read_private(Path(args.token_file)).strip()
        where = args.token_file
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        where = TOKEN_ENV
        if not token:
            return None
    if not token or any(c.isspace() for c in token):
        raise UsageError(f"{where}: expected the profile token alone (one line, no spaces)")
    return {"profile_token": token}


def _read_private(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {type(exc).__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"profile-sync: warning: {path} is open to other users: chmod 600 {path}", file=sys.stderr)
    return text


def _check_target(args: argparse.Namespace) -> None:
    if not args.target_url:
        return
    _require_secure(args.target_url.replace("{client}", args.client), "--target-url")
    given = [name for name, default in _SWITCH_DEFAULTS.items() if getattr(args, name) != default]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(
            f"{options}: switches of the built-in emulator, which --target-url replaces "
            "(run `profile-sync emulator` with them and point --target-url at it)"
        )


def _require_secure(url: str, what: str) -> None:
    try:
        require_secure(url)
    except TargetRejected as exc:
        raise UsageError(f"{what}: {exc}") from None


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="CSV file, plain or .gz")
    parser.add_argument("--client", default="demo", help="Target client code (default demo)")
    parser.add_argument(
        "--client-profile",
        metavar="PROFILE.json",
        help="the client's profile, stored for --client in the local stack as `clients set` would",
    )
    parser.add_argument("--api", choices=("v2", "v1", "single"), help="Target API (default v2)")
    parser.add_argument("--input-mode", choices=INPUT_MODES, help="encoded (default) or raw")
    parser.add_argument("--out", metavar="DIR", help="where the report files go (default out/<name>)")
    parser.add_argument(
        "--delta",
        action="store_true",
        help="delta sync: rows whose values Target already confirmed are counted unchanged, not sent",
    )
    parser.add_argument(
        "--state",
        metavar="DIR",
        help="keep the delta snapshots and quota counters in DIR between runs (default: none kept)",
    )
    parser.add_argument(
        "--redrive",
        nargs="?",
        const=",".join(DEFAULT_ONLY),
        metavar=",".join(CHOICES),
        help="when the job ends with errors, re-drive its rows of these outcomes once (default "
        "failed,pending) as a new linked job in the same local stack, as `profile-sync redrive` does; "
        "the summary shows both jobs and the file's combined outcome, which sets the exit code",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="a setting for this run, repeatable: the upper-case name of a Settings field, "
        "e.g. BATCH_MAX_ROWS=2000, POLL_INITIAL_DELAY_SECONDS=5, CALLS_PER_MINUTE=10",
    )
    parser.add_argument(
        "--clock",
        choices=("real", "virtual"),
        help="real: waits, back-off and the calls-per-minute window take real time; virtual: they "
        "take none (default: virtual for the built-in emulator, real with --target-url)",
    )
    target = parser.add_argument_group("a real Target (or an emulator you started)")
    target.add_argument(
        "--target-url",
        metavar="URL",
        help="Target's base URL, e.g. https://CLIENT.tt.omtrdc.net, instead of the built-in emulator",
    )
    target.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"a file holding a profile token (chmod 600); or set {TOKEN_ENV}",
    )
    target.add_argument(
        "--oauth-file",
        metavar="PATH",
        help="a JSON file of OAuth server-to-server credentials: client_id, client_secret, tenant "
        "(optional scopes, ims_url, token_url)",
    )
    switches = parser.add_argument_group("built-in emulator switches")
    switches.add_argument(
        "--fail-share", type=float, default=_SWITCH_DEFAULTS["fail_share"], help="share of rows Target fails"
    )
    switches.add_argument(
        "--lose-share",
        type=float,
        default=_SWITCH_DEFAULTS["lose_share"],
        help="share of rows Target reports successful and never applies (a landing check catches them)",
    )
    switches.add_argument(
        "--visibility-seconds",
        type=float,
        default=_SWITCH_DEFAULTS["visibility_seconds"],
        metavar="N",
        help="applied values show in profile fetch N seconds after their batch completed",
    )
    switches.add_argument(
        "--stuck-share",
        type=float,
        default=_SWITCH_DEFAULTS["stuck_share"],
        help="share of batches that end stuck",
    )
    switches.add_argument(
        "--stuck-batches",
        type=int,
        default=_SWITCH_DEFAULTS["stuck_batches"],
        metavar="N",
        help="the first N batches Target takes end stuck (Target is fine after them: a re-drive lands)",
    )
    switches.add_argument(
        "--vanish-batches",
        type=int,
        default=_SWITCH_DEFAULTS["vanish_batches"],
        metavar="N",
        help="the N batches after the stuck ones lose their status (their rows end pending)",
    )
    switches.add_argument(
        "--polls-until-complete",
        type=int,
        default=_SWITCH_DEFAULTS["polls_until_complete"],
        help="status polls before complete",
    )
    switches.add_argument(
        "--processing-seconds",
        type=float,
        default=_SWITCH_DEFAULTS["processing_seconds"],
        metavar="N",
        help="Target completes a batch N seconds after its submit, on the run's clock",
    )
    switches.add_argument(
        "--throttle-per-minute",
        type=int,
        default=_SWITCH_DEFAULTS["throttle_per_minute"],
        help="answer 503 above this many calls/min",
    )
    switches.add_argument(
        "--seed", type=int, default=_SWITCH_DEFAULTS["seed"], help="seed of the emulator's random shares"
    )
    switches.add_argument(
        "--escaped-xml",
        action="store_true",
        help="escaped, pretty-printed XML answers instead of Adobe's documented shape (raw &, one line)",
    )
    switches.add_argument(
        "--auth",
        choices=("none", "token", "oauth"),
        default=_SWITCH_DEFAULTS["auth"],
        help="the emulator requires authentication: a profile token, or OAuth server-to-server credentials "
        "(minted through the emulator's IMS and token endpoints), read from Secrets Manager",
    )


RUN = Command(
    "run",
    "run the whole pipeline locally on a file",
    cmd_run,
    _arguments,
    description="The pipeline as deployed, on this machine: the template's resources in moto, the "
    "real handlers, the real state machine, and the local Target emulator on a virtual clock, or a "
    "Target at --target-url on the real clock. Exit code 0 when the job is COMPLETE, 1 when it "
    "completed with errors, 2 when it was rejected or failed (or an option was wrong).",
)
