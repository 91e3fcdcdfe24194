"""`profile-sync validate`: the ingest's engine offline, on a file; a summary or one JSON object."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from profile_sync.client_profiles import validate_with_profile
from profile_sync.ingest import CappedReader, FileTooLarge
from profile_sync.settings import INPUT_MODES, Settings
from profile_sync.validate import ValidationResult
from profile_sync_local import clients
from profile_sync_local.cli.options import EXIT_USAGE, UsageError, make_out_dir
from profile_sync_local.deployed.resources import CliError
from profile_sync_local.subcommands import Command

EXIT_OK = 0
EXIT_ROWS_REJECTED = 1  # only with --strict
EXIT_FILE_REJECTED = 2


def limit_options(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument(
        "--input-mode",
        choices=INPUT_MODES,
        help="encoded (default): values are URL-encoded already (Target's format); raw: encode them",
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
    parser.add_argument(
        "--file-max-bytes",
        type=int,
        metavar="N",
        help=f"largest file, a .gz counted decompressed, as the ingest does (default "
        f"{defaults.file_max_bytes:,}; 0 = no limit)",
    )


def _settings_from(args: argparse.Namespace, base: Settings | None = None) -> Settings:
    return (base or Settings()).with_overrides(
        input_mode=args.input_mode,
        batch_max_rows=args.batch_max_rows,
        batch_max_bytes=args.batch_max_bytes,
        row_max_bytes=args.row_max_bytes,
        file_max_bytes=args.file_max_bytes,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    source = Path(args.file)
    out_dir = Path(args.out) if args.out else Path("out") / source.name.split(".")[0]
    try:
        make_out_dir(out_dir)
    except UsageError as exc:
        print(f"profile-sync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    profile = None
    if args.client_profile:
        try:
            profile = clients.load_local_profile(args.client_profile, "local")
        except CliError as exc:
            print(f"profile-sync: {exc}", file=sys.stderr)
            return EXIT_FILE_REJECTED
    # The profile's settings, then the options given (--input-mode wins over the profile's).
    settings = _settings_from(args) if profile is None else _settings_from(args, profile.settings(Settings()))
    try:
        opener = gzip.open if source.name.lower().endswith(".gz") else open
        with opener(source, "rb") as stream:
            # The cap counts what the engine reads, the decompressed bytes of a .gz (as the ingest).
            capped = CappedReader(stream, settings.file_max_bytes)
            result = validate_with_profile(capped, out_dir, settings, profile, source_name=str(source))
    except FileTooLarge as exc:
        return _file_unreadable(args, settings, source, out_dir, f"{exc} (--file-max-bytes, FILE_MAX_BYTES)")
    except FileNotFoundError:
        return _file_unreadable(args, settings, source, out_dir, "no such file")
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        return _file_unreadable(args, settings, source, out_dir, f"cannot read: {exc}")
    if args.json:
        print(json.dumps({**result.to_dict(), "out_dir": str(out_dir)}, indent=2))
    else:
        print(format_summary(source, result, out_dir))
    if result.file_error:
        return EXIT_FILE_REJECTED
    if args.strict and result.rejected:
        return EXIT_ROWS_REJECTED
    return EXIT_OK


def _file_unreadable(
    args: argparse.Namespace, settings: Settings, source: Path, out_dir: Path, reason: str
) -> int:
    """A file rejected before the engine could finish it: one line on stderr and, with --json, the
    object a script expects (its file_error says why), not an empty stdout."""
    print(f"profile-sync: {source}: {reason}", file=sys.stderr)
    if args.json:
        result = ValidationResult(source_name=str(source), input_mode=settings.input_mode)
        result.file_error = f"{source}: {reason}"
        print(json.dumps({**result.to_dict(), "out_dir": str(out_dir)}, indent=2))
    return EXIT_FILE_REJECTED


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
    if result.rejected_unlisted:
        lines.append(f"            {result.rejected_unlisted:,} of them counted, not listed in rejects.csv")
    lines.append(f"  skipped   {result.skipped:>10,}" + ("  (no values to send)" if result.skipped else ""))
    for warning in result.warnings:
        lines.append(f"  warning: {warning}")
    if result.rejected:
        lines.append(f"  rejected rows with line numbers and reasons: {out_dir / 'rejects.csv'}")
    lines.append(f"  batch files: {out_dir}")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="CSV file, plain or .gz")
    parser.add_argument(
        "--out", metavar="DIR", help="where batch files and rejects.csv go (default out/<name>)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any row is rejected")
    limit_options(parser)
    parser.add_argument(
        "--client-profile",
        metavar="PROFILE.json",
        help="read the file as this client profile maps it (encoding, separator, columns)",
    )


VALIDATE = Command(
    "validate",
    "validate and split a CSV file offline",
    cmd_validate,
    _arguments,
    description="Validate a CSV (plain or .gz) the way the ingest function does, and write the batch "
    "files and the rejects file into --out.",
)
