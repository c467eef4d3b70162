"""Progress of long jobs: a bar on a terminal, a plain line every few seconds in a log.

A tqdm bar redraws itself with carriage returns, which fills a log file or a CI log with
noise, so it is drawn on a terminal only (or when `--progress` forces it). Without a terminal
(CI, cron, a pipe) a job still says that it is alive: a plain line on stderr every
`LOOKALIKE_PROGRESS_SECONDS` seconds (default 10), such as

    lookalike compare: akaze 40/144 img, 12 s, ~31 s left

and one line when it ends, if it printed any. A job shorter than the interval prints nothing.
`--quiet` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

# Set by the command line for the command being run: `--progress` (True: bars even without a
# terminal; None: bars on a terminal only) and the command's name, which starts each log line.
FORCE_PROGRESS: bool | None = None
JOB_NAME = "lookalike"
DEFAULT_INTERVAL = 10.0  # seconds between two log lines


def configure(force: bool | None, job: str) -> None:
    """What the command line sets before running a command (see the module's constants)."""
    global FORCE_PROGRESS, JOB_NAME
    FORCE_PROGRESS, JOB_NAME = force, job


def on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def show_progress(quiet: bool) -> bool:
    """Whether to draw a bar: on a terminal, or when forced; never when quiet."""
    if quiet:
        return False
    if FORCE_PROGRESS is not None:
        return FORCE_PROGRESS
    return on_terminal()


def log_interval() -> float:
    """Seconds between two log lines (`LOOKALIKE_PROGRESS_SECONDS`; 0 logs every step)."""
    try:
        return max(0.0, float(os.environ.get("LOOKALIKE_PROGRESS_SECONDS", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def progress_bar(total: int | None = None, desc: str = "", quiet: bool = False,
                 unit: str = "img", iterable: Iterable | None = None, initial: int = 0):
    """A tqdm bar on a terminal, a `LogProgress` elsewhere, nothing when quiet; each takes
    `update(n)`, `set_postfix(...)`, `close()` and iterates over `iterable` when given."""
    if show_progress(quiet):
        from tqdm import tqdm

        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit,
                    file=sys.stderr, dynamic_ncols=True, leave=False)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return LogProgress(total, desc, unit, iterable, initial, enabled=not quiet)


class LogProgress:
    """Progress told in plain lines, at most one every `log_interval()` seconds."""

    def __init__(self, total: int | None, desc: str, unit: str, iterable: Iterable | None = None,
                 initial: int = 0, enabled: bool = True, interval: float | None = None,
                 stream=None):
        self.total, self.desc, self.unit, self.iterable = total, desc, unit, iterable
        self.count = initial
        self.enabled = enabled
        self.interval = log_interval() if interval is None else interval
        self.stream = stream
        self.started = self.last = time.monotonic()
        self.postfix = ""
        self.printed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self._print(self.line(now))

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key} {value}" for key, value in values.items())

    def close(self) -> None:
        if self.enabled and self.printed:
            self.enabled = False
            elapsed = time.monotonic() - self.started
            self._print(f"{self._head()}, done in {elapsed:.0f} s")
        self.enabled = False

    def line(self, now: float) -> str:
        elapsed = now - self.started
        text = f"{self._head()}, {elapsed:.0f} s"
        if self.total and 0 < self.count < self.total:
            text += f", ~{elapsed * (self.total - self.count) / self.count:.0f} s left"
        return text + (f" ({self.postfix})" if self.postfix else "")

    def _head(self) -> str:
        done = f"{self.count}/{self.total}" if self.total is not None else f"{self.count}"
        return f"{JOB_NAME}: {self.desc + ' ' if self.desc else ''}{done} {self.unit}"

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)
        self.printed = True
