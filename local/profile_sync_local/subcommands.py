"""One way to declare a `profile-sync` subcommand: its name and help, what adds its arguments, and
what runs it (returns the exit code). A command with subcommands (`clients list | show | ...`) names
them instead of a runner. Every part of the command line (cli, deployed, clients) declares its
commands so, and `profile-sync` adds them with :func:`add_commands`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int] | None = None
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    description: str | None = None
    subcommands: tuple[Command, ...] = ()


def add_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    commands: Iterable[Command],
) -> None:
    """Add each command to ``subparsers``; the parsed arguments' ``handler`` is what runs it."""
    for command in commands:
        parser = subparsers.add_parser(command.name, help=command.help, description=command.description)
        command.arguments(parser)
        if command.subcommands:
            nested = parser.add_subparsers(dest=f"{command.name}_command", required=True, metavar="ACTION")
            add_commands(nested, command.subcommands)
        else:
            parser.set_defaults(handler=command.run)
