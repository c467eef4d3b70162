"""`lookalike serve`: the HTTP API and web page of an index (`lookalike.server`), on uvicorn."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

from lookalike.commands.common import EXIT_OK, UsageError


def add_command(subparsers) -> None:
    from lookalike.server import (
        DEFAULT_MAX_BYTES,
        DEFAULT_MAX_PIXELS,
        DEFAULT_MAX_WAIT,
        DEFAULT_QUEUE,
        DEFAULT_WORKERS,
        megabytes,
        megapixels,
    )

    parser = subparsers.add_parser(
        "serve", help="HTTP API and web page for an index",
        description="Serve POST /identify, POST /verify, GET /landmarks, GET /health, OpenAPI "
                    "docs at /docs and a web page at /.",
    )
    parser.add_argument("--index", required=True, metavar="NAME.lkidx")
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "lookalike-serve"),
                        help="the only folder the server writes to (temporary files)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help=f"largest upload in bytes (default {DEFAULT_MAX_BYTES:,} = "
                             f"{megabytes(DEFAULT_MAX_BYTES)})")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest photo in pixels (default {DEFAULT_MAX_PIXELS:,} = "
                             f"{megapixels(DEFAULT_MAX_PIXELS)})")
    parser.add_argument("--workers", type=positive_int, default=DEFAULT_WORKERS, metavar="N",
                        help=f"photos processed at once (default {DEFAULT_WORKERS})")
    parser.add_argument("--queue", type=non_negative_int, default=DEFAULT_QUEUE, metavar="N",
                        help="photos that may wait for a worker; more are answered 503 with "
                             f"Retry-After (default {DEFAULT_QUEUE})")
    parser.add_argument("--max-wait", type=positive_float, default=DEFAULT_MAX_WAIT,
                        metavar="SECONDS",
                        help="a photo that waited this long for a worker is answered 503 "
                             f"instead of late (default {DEFAULT_MAX_WAIT:g})")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--use-gps", action="store_true")
    parser.add_argument("--calibration", metavar="FILE.json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from lookalike.identify import Settings
    from lookalike.index import GalleryError
    from lookalike.server import create_app

    try:
        app = create_app(args.index, args.data_dir, args.max_bytes, args.max_pixels,
                         args.workers, args.calibration,
                         Settings(threshold=args.threshold, use_gps=args.use_gps),
                         queue=args.queue, max_wait=args.max_wait)
    except (GalleryError, ValueError) as error:
        raise UsageError(str(error)) from None
    print(f"serving {args.index} on http://{args.host}:{args.port}/ (API docs at /docs)",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value
