"""The two kinds of failure the command line distinguishes.

A `UsageError` means the user asked for something that cannot be (unknown name, malformed
architecture, wrong flag value): exit status 2. A `DataError` or any other `NasreproError` is a
runtime failure (missing or corrupt files, a failed evaluation): exit status 1. Each carries one
line that names what was wrong and what to do about it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn


class NasreproError(Exception):
    """Base class: a failure with a one-line, user-facing explanation."""

    exit_code = 1


class UsageError(NasreproError, ValueError):
    """The request itself is wrong (bad name, value, flag or architecture string)."""

    exit_code = 2


class DataError(NasreproError):
    """A dataset or benchmark file is missing, partial or corrupt."""


class EvaluationFailed(NasreproError):
    """One architecture could not be evaluated (e.g. NaN loss); the search records it and goes on."""


class BudgetExhausted(NasreproError):
    """The evaluator refuses a new unique query because the search budget is spent."""


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Exit with `main()`'s status: the ``python -m`` entry of a module. A `NasreproError` is its one
    line on stderr and its exit code, as under ``nasrepro``, never a traceback."""
    import sys

    try:
        code = main()
    except NasreproError as err:
        print(f"error: {err}", file=sys.stderr)
        code = err.exit_code
    sys.exit(code or 0)
