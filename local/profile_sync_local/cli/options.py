"""What every local command checks before it runs: a bad option is one line on stderr and exit 2."""

from __future__ import annotations

from pathlib import Path

EXIT_USAGE = 2  # a bad option: nothing was run


class UsageError(Exception):
    """A bad option or input: one line on stderr, exit 2, nothing run."""


def make_out_dir(out_dir: Path) -> None:
    """--out checked before anything runs: a file there, or no permission, is a bad option (exit 2),
    not a traceback whose exit 1 would read as COMPLETE_WITH_ERRORS."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create the report folder: {exc.strerror}") from None
