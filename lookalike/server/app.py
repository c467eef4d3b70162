"""`lookalike serve`: the identify/verify/gallery API over HTTP (FastAPI) and a web app.

Why this module is small: it only assembles one server. The ASGI guards (body size, the work
gate, the catch-all 500) are `lookalike.server.guards`; the one error shape and its handlers
`lookalike.server.errors`; API keys `lookalike.server.auth`; the endpoints, by area,
`lookalike.server.routes`; the typed answers `lookalike.server.models`; the live gallery and
its atomic edits `lookalike.server.live_gallery`.

The only folder the server may write to is its data directory (temporary files of the
libraries it uses, and reference photos added over HTTP, go there) and, for gallery edits
with an admin key, the index file itself. Uploads up to the byte limit are held in memory,
never spooled to disk.
"""

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lookalike.server.auth import FailedKeyThrottle, KeyGuard, KeyRing
from lookalike.server.context import Context
from lookalike.server.errors import install_error_handlers
from lookalike.server.guards import MULTIPART_OVERHEAD, Admission, BodyLimit, CatchAll, WorkGate
from lookalike.server.routes.landmarks import add_landmark_routes
from lookalike.server.routes.pages import add_page_routes
from lookalike.server.routes.photos import add_photo_routes
from lookalike.server.routes.references import add_reference_routes
from lookalike.server.routes.status import add_status_routes
from lookalike.server.schema import install_schema, operation_id
from lookalike.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]

# FastAPI and Starlette are imported inside the functions that use them, so that the rest of
# the command line does not pay for importing them.

API_DESCRIPTION = """\
Upload a photo (multipart field `file`) to `/identify`, several (fields `files`) to
`/identify/batch`, or one with a `landmark` id to `/verify`. Answers carry the landmark's
stable id, display names, location and the matched region (`bounding_poly`) in the photo's
pixels; each candidate carries its best reference photo's id, thumbnail URL and the verified
point pairs.

The gallery endpoints list and edit the landmarks and their reference photos. Reading is
open unless the server has `read` keys; editing needs a key with `admin` scope, sent as
`Authorization: Bearer KEY` or `X-API-Key: KEY` (never in the URL). An address that sends
too many unknown keys is refused for a while (429 with Retry-After).

Every error is `{"error": code, "message": text}`; 503 (busy) comes with Retry-After."""


def create_app(settings: ServerSettings) -> "FastAPI":  # noqa: F821
    """The application for one index; `settings.data_dir` is the only place it may write."""
    from lookalike.extras import optional_import

    optional_import("fastapi", "serve")
    optional_import("python_multipart", "serve")  # uploads
    optional_import("fastapi_offline", "serve")  # the API docs' assets
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
    from starlette.formparsers import MultiPartParser

    from lookalike.server.live_gallery import LiveIndex

    data_dir = Path(settings.data_dir).resolve() if settings.data_dir is not None else None
    if data_dir is not None:
        (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(data_dir / "tmp")
    gallery = LiveIndex(settings.index, settings.identify_settings(), settings.calibration,
                        data_dir, settings.max_pixels)
    # Uploads up to the limit stay in memory: Starlette would otherwise spool them to disk.
    MultiPartParser.spool_max_size = settings.max_bytes + MULTIPART_OVERHEAD
    # The heavy work runs on `workers` dedicated threads: few threads touching large buffers
    # keeps the allocator's per-thread arenas (and so memory) flat.
    executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="lookalike")
    gate = WorkGate(settings.workers, settings.queue, settings.max_wait, executor)

    app = FastAPI(
        title="lookalike", version=_version(),
        summary="Which landmark does this photo show? Offline landmark recognition.",
        description=API_DESCRIPTION, docs_url=None, redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    install_schema(app)
    app.state.gallery = gallery
    app.state.gate = gate
    app.state.settings = settings
    # Outermost last: CORS, CatchAll, then Admission (refuse before reading a body), BodyLimit.
    app.add_middleware(BodyLimit, limit=settings.max_bytes + MULTIPART_OVERHEAD,
                       max_bytes=settings.max_bytes)
    app.add_middleware(Admission, gate=gate)
    app.add_middleware(CatchAll)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"],
                           expose_headers=["Retry-After"])
    install_error_handlers(app)
    throttle = FailedKeyThrottle(settings.failed_key_limit, settings.failed_key_window)
    guard = KeyGuard(KeyRing(dict(settings.api_keys)), throttle)
    context = Context(settings, gallery, gate, guard, time.time())
    add_photo_routes(app, context)
    add_landmark_routes(app, context)
    add_reference_routes(app, context)
    add_status_routes(app, context)
    add_page_routes(app)
    return app


def _version() -> str:
    from lookalike import __version__

    return __version__
