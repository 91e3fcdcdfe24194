"""`profile-sync submit | jobs | status | report`: the command line against a deployed stack.

boto3 against the stack's resources: the drop bucket and the JobsTable, named by options
(`--bucket`, `--table`) or read from the stack's Outputs (`DropBucketName`, `JobsTableName`).
Errors are one line on stderr and an exit code, never a traceback:
0 done, 1 not found (file, stack, bucket, table, job, report), 2 anything else (no credentials or
region, a bad client code, AWS refused).

Modules: :mod:`.resources` (the stack's resources, found from the options or the stack's Outputs,
and the errors a user can meet), :mod:`.commands` (what each command does, and its options),
:mod:`.output` (what the commands print).
"""

from profile_sync_local.deployed.commands import COMMANDS
from profile_sync_local.deployed.resources import (
    DEFAULT_STACK,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    CliError,
    Deployed,
    connect,
    guarded,
    stack_options,
)

__all__ = [
    "COMMANDS",
    "DEFAULT_STACK",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "CliError",
    "Deployed",
    "connect",
    "guarded",
    "stack_options",
]
