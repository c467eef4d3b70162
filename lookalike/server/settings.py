"""What `lookalike serve` is configured with: limits, workers, keys, CORS.

Kept apart from `lookalike.server.app` so that a command can build and check the settings (and
`--help` show the defaults) without importing FastAPI, torch or the pipeline; `create_app`
takes a `ServerSettings` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.server.auth import SCOPES

DEFAULT_MAX_BYTES = 20_000_000  # 20 MB, as the README says
DEFAULT_MAX_PIXELS = 40_000_000
# One photo at a time: ALIKED's forward pass already uses both cores and runs under a lock, so
# a second worker only queued its photo behind the first and doubled every answer's latency
# (accepted p95 at 20 clients: 3.2 s with two workers; see docs/benchmarks.md).
DEFAULT_WORKERS = 1
DEFAULT_QUEUE = 4
DEFAULT_MAX_WAIT = 0.5  # seconds a photo may wait for a worker before it is refused
DEFAULT_MAX_FILES = 16  # files in one batch request (all within the byte limit)
# Unknown API keys one address may present in a window before it is refused for a while.
DEFAULT_FAILED_KEY_LIMIT = 10
DEFAULT_FAILED_KEY_WINDOW = 60.0  # seconds


def megabytes(count: int) -> str:
    """20000000 -> '20 MB', 3100000 -> '3.1 MB', 65536 -> '65.5 kB' (decimal units)."""
    if count >= 1_000_000:
        return f"{count / 1e6:.3g} MB"
    return f"{count / 1e3:.3g} kB" if count >= 1000 else f"{count} bytes"


def megapixels(count: int) -> str:
    return f"{count / 1e6:.3g} Mpx"


@dataclass(frozen=True)
class ServerSettings:
    """Everything `create_app` needs, checked once (no torch or FastAPI import here)."""

    index: Path
    data_dir: Path | None = None  # the only folder the server writes to (besides the index)
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = DEFAULT_WORKERS
    queue: int = DEFAULT_QUEUE
    max_wait: float = DEFAULT_MAX_WAIT
    max_files: int = DEFAULT_MAX_FILES  # files in one batch request
    calibration: str | None = None
    threshold: float | None = None
    use_gps: bool = False
    api_keys: Mapping[str, str] = field(default_factory=dict)  # key -> read | admin
    cors_origins: tuple[str, ...] = ()  # empty: no cross-origin requests allowed
    failed_key_limit: int = DEFAULT_FAILED_KEY_LIMIT
    failed_key_window: float = DEFAULT_FAILED_KEY_WINDOW

    def __post_init__(self):
        if self.workers < 1 or self.queue < 0 or not self.max_wait > 0 or self.max_files < 1:
            raise ValueError("workers must be >= 1, queue >= 0, max_wait > 0 and "
                             "max_files >= 1")
        if self.failed_key_limit < 1 or not self.failed_key_window > 0:
            raise ValueError("failed_key_limit must be >= 1 and failed_key_window > 0")
        unknown = sorted(set(self.api_keys.values()) - set(SCOPES))
        if unknown:
            raise ValueError(f"API key scopes must be read or admin, not {', '.join(unknown)}")

    def identify_settings(self):
        """The `lookalike.gallery.identify.Settings` every request starts from."""
        from lookalike.gallery.identify import Settings

        return Settings(threshold=self.threshold, use_gps=self.use_gps,
                        max_pixels=self.max_pixels)
