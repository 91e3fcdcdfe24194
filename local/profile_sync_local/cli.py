"""`profile-sync`: the command line of target-profile-sync."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from profile_sync.settings import INPUT_MODES, Settings
from profile_sync.validate import ValidationResult, validate_and_split
from profile_sync_local import deployed, emulator

EXIT_OK = 0
EXIT_ROWS_REJECTED = 1  # only with --strict
EXIT_FILE_REJECTED = 2


def _limit_options(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument(
        "--input-mode",
        choices=INPUT_MODES,
        default=defaults.input_mode,
        help="encoded: values are URL-encoded already (Target's format); raw: encode them",
    )
    parser.add_argument(
        "--batch-max-rows",
        type=int,
        metavar="N",
        help=f"rows per batch file (default {defaults.batch_max_rows:,})",
    )
    parser.add_argument(
        "--batch-max-bytes",
        type=int,
        metavar="N",
        help=f"a batch file stays under this size (default {defaults.batch_max_bytes:,})",
    )
    parser.add_argument(
        "--row-max-bytes",
        type=int,
        metavar="N",
        help=f"largest decoded row (default {defaults.row_max_bytes:,})",
    )


def _settings_from(args: argparse.Namespace) -> Settings:
    return Settings().with_overrides(
        input_mode=args.input_mode,
        batch_max_rows=args.batch_max_rows,
        batch_max_bytes=args.batch_max_bytes,
        row_max_bytes=args.row_max_bytes,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    source = Path(args.file)
    out_dir = Path(args.out) if args.out else Path("out") / source.name.split(".")[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        opener = gzip.open if source.name.lower().endswith(".gz") else open
        with opener(source, "rb") as stream:
            result = validate_and_split(stream, out_dir, _settings_from(args), source_name=str(source))
    except FileNotFoundError:
        print(f"profile-sync: {source}: no such file", file=sys.stderr)
        return EXIT_FILE_REJECTED
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        print(f"profile-sync: {source}: cannot read: {exc}", file=sys.stderr)
        return EXIT_FILE_REJECTED
    if args.json:
        print(json.dumps({**result.to_dict(), "out_dir": str(out_dir)}, indent=2))
    else:
        print(format_summary(source, result, out_dir))
    if result.file_error:
        return EXIT_FILE_REJECTED
    if args.strict and result.rejected:
        return EXIT_ROWS_REJECTED
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    # Imported here: moto and the local stack load only for this command.
    from profile_sync_local import run  # noqa: PLC0415

    source = Path(args.file)
    if not source.is_file():
        print(f"profile-sync: {source}: no such file", file=sys.stderr)
        return run.EXIT_FAILED
    config = emulator.EmulatorConfig(
        seed=args.seed,
        fail_share=args.fail_share,
        stuck_share=args.stuck_share,
        polls_until_complete=args.polls_until_complete,
        seconds_until_complete=args.processing_seconds,
        calls_per_minute=args.throttle_per_minute,
        escaped_xml=args.escaped_xml,
    )
    out_dir = Path(args.out) if args.out else Path("out") / source.name.split(".")[0]
    result = run.run_local(
        source,
        out_dir=out_dir,
        client=args.client,
        api=args.api,
        input_mode=args.input_mode,
        target_url=args.target_url,
        emulator_config=config,
        progress_stream=sys.stderr,  # stdout keeps the summary (or the JSON) alone
        auth=args.auth,
    )
    print(json.dumps(result, indent=2) if args.json else run.format_result(result))
    return run.exit_code(result)


def format_summary(source: Path, result: ValidationResult, out_dir: Path) -> str:
    if result.file_error:
        return f"REJECTED {result.file_error}"
    lines = [
        f"{source}: {result.received:,} rows received ({result.id_column} + {len(result.columns)} parameters)"
    ]
    batch_word = "batch" if len(result.batches) == 1 else "batches"
    lines.append(f"  accepted  {result.accepted:>10,}  in {len(result.batches)} {batch_word}")
    for batch in result.batches:
        lines.append(f"            {Path(batch.path).name}: {batch.rows:,} rows, {batch.bytes:,} bytes")
    reasons = ", ".join(f"{code}: {count:,}" for code, count in sorted(result.reasons.items()))
    lines.append(f"  rejected  {result.rejected:>10,}" + (f"  ({reasons})" if reasons else ""))
    lines.append(f"  skipped   {result.skipped:>10,}" + ("  (no values to send)" if result.skipped else ""))
    for warning in result.warnings:
        lines.append(f"  warning: {warning}")
    if result.rejected:
        lines.append(f"  rejected rows with line numbers and reasons: {out_dir / 'rejects.csv'}")
    lines.append(f"  batch files: {out_dir}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profile-sync",
        description="Validate CSV visitor attributes and load them into Adobe Target profiles.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="validate and split a CSV file offline",
        description="Validate a CSV (plain or .gz) the way the ingest function does, and write the batch "
        "files and the rejects file into --out.",
    )
    validate.add_argument("file", help="CSV file, plain or .gz")
    validate.add_argument(
        "--out", metavar="DIR", help="where batch files and rejects.csv go (default out/<name>)"
    )
    validate.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    validate.add_argument("--strict", action="store_true", help="exit 1 when any row is rejected")
    _limit_options(validate)
    validate.set_defaults(handler=cmd_validate)

    run_parser = commands.add_parser(
        "run",
        help="run the whole pipeline locally on a file",
        description="The pipeline as deployed, on this machine: the template's resources in moto, the "
        "real handlers, the real state machine on a virtual clock, and the local Target emulator (or "
        "--target-url). Exit code 0 when the job is COMPLETE, 1 when it completed with errors, 2 when it "
        "was rejected or failed.",
    )
    run_parser.add_argument("file", help="CSV file, plain or .gz")
    run_parser.add_argument("--client", default="demo", help="Target client code (default demo)")
    run_parser.add_argument("--api", choices=("v2", "v1", "single"), help="Target API (default v2)")
    run_parser.add_argument("--input-mode", choices=INPUT_MODES, help="encoded (default) or raw")
    run_parser.add_argument(
        "--target-url", help="a running Target (emulator) instead of the built-in emulator"
    )
    run_parser.add_argument("--out", metavar="DIR", help="where the report files go (default out/<name>)")
    run_parser.add_argument("--json", action="store_true", help="print one JSON object")
    switches = run_parser.add_argument_group("emulator switches")
    switches.add_argument("--fail-share", type=float, default=0.0, help="share of rows Target fails")
    switches.add_argument("--stuck-share", type=float, default=0.0, help="share of batches that end stuck")
    switches.add_argument("--polls-until-complete", type=int, default=2, help="status polls before complete")
    switches.add_argument(
        "--processing-seconds",
        type=float,
        default=0.0,
        metavar="N",
        help="Target completes a batch N seconds after its submit, on the run's (virtual) clock",
    )
    switches.add_argument(
        "--throttle-per-minute", type=int, default=0, help="answer 503 above this many calls/min"
    )
    switches.add_argument("--seed", type=int, default=1, help="seed of the emulator's random shares")
    switches.add_argument(
        "--escaped-xml",
        action="store_true",
        help="escaped, pretty-printed XML answers instead of Adobe's documented shape (raw &, one line)",
    )
    switches.add_argument(
        "--auth",
        choices=("none", "token", "oauth"),
        default="none",
        help="Target requires authentication: a profile token, or OAuth server-to-server credentials "
        "(minted through the emulator's IMS and token endpoints), read from Secrets Manager",
    )
    run_parser.set_defaults(handler=cmd_run)

    emulator_parser = commands.add_parser(
        "emulator",
        help="run the local Target emulator on loopback",
        description="A local HTTP server that answers like Adobe Target's profile APIs (bulk v2/v1, batch "
        "status, single update, profile fetch, IMS and profile-token endpoints), with switches for auth, "
        "throttling, failures, stuck and vanished batches. Point TARGET_BASE_URL at the URL it prints.",
    )
    emulator.add_arguments(emulator_parser)
    emulator_parser.set_defaults(handler=emulator.run_from_args)

    deployed.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
