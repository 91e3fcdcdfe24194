"""`profile-sync`: the command line of target-profile-sync.

Each command is declared once (:class:`profile_sync_local.subcommands.Command`) beside what it does:
:mod:`.validate` (offline), :mod:`.local_run` (the pipeline on this machine), the emulator, and the
commands against a deployed stack (:mod:`profile_sync_local.deployed`, :mod:`profile_sync_local.clients`).
"""

from __future__ import annotations

import argparse
import sys

from profile_sync_local import clients, deployed, emulator
from profile_sync_local.cli.local_run import RUN
from profile_sync_local.cli.validate import VALIDATE
from profile_sync_local.redrive_cli import REDRIVE
from profile_sync_local.subcommands import Command, add_commands

EMULATOR = Command(
    "emulator",
    "run the local Target emulator on loopback",
    emulator.run_from_args,
    emulator.add_arguments,
    description="A local HTTP server that answers like Adobe Target's profile APIs (bulk v2/v1, batch "
    "status, single update, profile fetch, IMS and profile-token endpoints), with switches for auth, "
    "throttling, failures, stuck and vanished batches. Point TARGET_BASE_URL at the URL it prints.",
)

COMMANDS = (VALIDATE, RUN, EMULATOR, *deployed.COMMANDS, REDRIVE, clients.CLIENTS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profile-sync",
        description="Validate CSV visitor attributes and load them into Adobe Target profiles.",
    )
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
