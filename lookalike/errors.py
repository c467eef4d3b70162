"""The one library error for a caller's mistake, so that the edges can tell it from a bug.

A library function raises a subclass of `InputError` when what it was asked for cannot be
done as asked: a path that does not exist, an unknown method or preset, a gallery or index
that cannot be read, a calibration fitted on other methods. The message names the thing and
the fix. The command line prints it and exits 1 (`lookalike.commands.common`); the library
never imports the command line to say so.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping


class InputError(Exception):
    """A mistake in what the caller asked for, with a message meant for the user."""


def write_errors_csv(errors: Mapping[str, str], path: str | os.PathLike) -> None:
    """`errors.csv` beside a run's outputs: each file that could not be used, and why."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "error"])
        writer.writerows(sorted(errors.items()))
