"""User-facing errors: one line naming what is wrong and where, and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

EXIT_CODE = 2


class MixmergeError(Exception):
    """Bad input from the user (config, data, checkpoint). Printed as one line; exit code 2."""


def report_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an entry point so a MixmergeError prints one line on stderr and exits non-zero.

    Hydra catches ordinary exceptions and prints a stack trace; SystemExit passes through it.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MixmergeError as err:
            print(f"mixmerge: error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_CODE)

    return wrapper
