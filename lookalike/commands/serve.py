"""`lookalike serve`: the HTTP API and web page of an index (`lookalike.server.app`), on uvicorn."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from lookalike.commands.common import EXIT_OK, UsageError, add_engine_option


def add_command(subparsers) -> None:
    from lookalike.server.settings import (
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
        description="Serve POST /identify, /identify/batch and /verify, the gallery endpoints "
                    "(/landmarks, /references), GET /health, OpenAPI docs at /docs and a web "
                    "app at / and /gallery.",
        epilog="Memory: the learned models keep ONNX Runtime's memory between photos (~0.85 "
               "GB for ALIKED at 800 px), which saves ~20% of each photo's CPU; set "
               "LOOKALIKE_RELEASE_MODEL_MEMORY=1 to give it back after each photo (~0.2 GB "
               "between requests).",
    )
    parser.add_argument("--index", required=True, metavar="NAME.lkidx")
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "lookalike-serve"),
                        help="the only folder the server writes to (temporary files, and "
                             "reference photos added over HTTP: keep it for those)")
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
    parser.add_argument("--api-keys", metavar="FILE",
                        help="API keys, one 'KEY SCOPE' (read or admin) a line; also read from "
                             "LOOKALIKE_API_KEYS='KEY:SCOPE,...'. Without keys reading is open "
                             "and gallery editing is off; with a read key reading needs a key")
    parser.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                        help="allow cross-origin requests from this origin, e.g. "
                             "https://example.org (repeatable; default: none)")
    add_engine_option(parser, "search the index in this process (default) or on its "
                              "shards, one Ray actor each (RAY_ADDRESS or a local Ray)")
    parser.add_argument("--shards", type=int, metavar="N",
                        help="with --engine ray: how many shards (default: those `index build "
                             "--shards` wrote, else 2)")
    parser.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace):
    """The server's settings from the flags, with the API keys of --api-keys FILE and of the
    LOOKALIKE_API_KEYS variable (raises ApiKeyError or ValueError)."""
    from lookalike.server.auth import keys_from_environment, read_key_file
    from lookalike.server.settings import ServerSettings

    keys = keys_from_environment()
    if args.api_keys:
        keys.update(read_key_file(args.api_keys))
    return ServerSettings(
        index=Path(args.index), data_dir=Path(args.data_dir), max_bytes=args.max_bytes,
        max_pixels=args.max_pixels, workers=args.workers, queue=args.queue,
        max_wait=args.max_wait, calibration=args.calibration, threshold=args.threshold,
        use_gps=args.use_gps, api_keys=keys, cors_origins=tuple(args.cors_origin or ()))


def run(args: argparse.Namespace) -> int:
    from lookalike.extras import optional_import
    from lookalike.gallery.folders import GalleryError
    from lookalike.server.app import create_app
    from lookalike.server.auth import KeyRing

    uvicorn = optional_import("uvicorn", "serve")  # before the index is loaded
    if args.engine == "ray":
        from lookalike.engines.ray import ray_shortlists
        from lookalike.gallery.identify import Identifier
        from lookalike.gallery.shortlist import shards_of

        Identifier.shortlists = ray_shortlists(args.shards or shards_of(args.index) or 2)
    try:
        settings = settings_from_args(args)
        app = create_app(settings)
    except (GalleryError, ValueError) as error:
        raise UsageError(str(error)) from None
    keys = KeyRing(dict(settings.api_keys))
    print(f"serving {args.index} on http://{args.host}:{args.port}/ (API docs at /docs); "
          f"reading {'open' if keys.read_open else 'needs a key'}, gallery editing "
          f"{'needs an admin key' if keys.admin_enabled else 'off (no admin key)'}",
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
