"""`lookalike serve`: the identify/verify API over HTTP (FastAPI) and a web page for people.

Why these guards: the server takes photos from strangers. The request body is capped while it
streams in (before any parsing, with or without a Content-Length), uploads are held in memory
(never spooled to disk), the content is decoded by the same loader as the CLI (which sniffs the
bytes and ignores the file name and the Content-Type), pixels are capped, and the server sheds
load instead of queueing without bound: at most `workers` photos are processed at once and
`queue` more wait, each at most `max_wait` seconds; past that it answers 503 with Retry-After
at once, so an accepted photo is answered in bounded time and memory stays flat.

Every error, the framework's own (404, 405, 422) and an unexpected exception's (500) included,
is one JSON shape: `{"error": CODE, "message": TEXT}`. The API docs (/docs, /redoc) are served
from assets installed with the `fastapi-offline` package, so they work without internet. The
only folder the server may write to is its data directory (temporary files of the libraries
it uses are pointed there).
"""

import asyncio
import base64
import dataclasses
import http
import io
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from lookalike.identify import Identifier, Settings
from lookalike.loading import ImageLoadError

# FastAPI and Starlette are imported inside the functions that use them, so that the rest of
# the command line does not pay for importing them. (No `from __future__ import annotations`
# here: FastAPI reads the endpoint annotations at definition time.)

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
DEFAULT_MAX_BYTES = 20_000_000  # 20 MB, as the README says
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_WORKERS = 2
DEFAULT_QUEUE = 4
DEFAULT_MAX_WAIT = 0.5  # seconds a photo may wait for a worker before it is refused
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the small form fields around the file
WORK_PATHS = frozenset({"/identify", "/verify"})  # the requests that take a worker
DOCS_ASSETS = "/docs-assets"


def megabytes(count: int) -> str:
    """20000000 -> '20 MB', 3100000 -> '3.1 MB', 65536 -> '65.5 kB' (decimal units)."""
    if count >= 1_000_000:
        return f"{count / 1e6:.3g} MB"
    return f"{count / 1e3:.3g} kB" if count >= 1000 else f"{count} bytes"


def megapixels(count: int) -> str:
    return f"{count / 1e6:.3g} Mpx"


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes, by header or while streaming.

    A body without Content-Length (chunked) is counted as it arrives. The framework turns any
    error raised while it parses a body into its own 400, so the middleware remembers that the
    limit was passed, drops whatever the app answers and sends the 413 itself.
    """

    def __init__(self, app, limit: int, max_bytes: int):
        self.app = app
        self.limit = limit
        self.max_bytes = max_bytes  # what the message states: the file, without the form

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await too_large(self.max_bytes)(scope, receive, send)
        seen = 0
        exceeded = False
        started = False

        async def limited_receive():
            nonlocal seen, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it could not read: the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            pass
        if exceeded and not started:
            await too_large(self.max_bytes)(scope, receive, send)


class CatchAll:
    """ASGI middleware: an unexpected exception answers 500 in the error shape, with its
    traceback in the log (instead of Starlette's plain-text "Internal Server Error")."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:  # too late for another answer: the server closes the connection
                raise
            await error_response(500, "internal_error",
                                 "the server failed on this request; the error is in its log"
                                 )(scope, receive, send)


class Busy(Exception):
    """The server is at capacity; answered 503 with Retry-After."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class WorkGate:
    """Bounds the photos in the server: `workers` processed at once, `queue` more waiting.

    A request is admitted when it arrives (before its body is read, so refusing it costs
    nothing) if fewer than workers + queue are admitted; it then waits for a worker at most
    `max_wait` seconds from its arrival. Counters are touched on the event loop only.
    """

    def __init__(self, workers: int, queue: int, max_wait: float, executor: ThreadPoolExecutor):
        self.workers = workers
        self.queue = queue
        self.max_wait = max_wait
        self.executor = executor
        self.admitted = 0
        self.service_s = 1.0  # moving average of a photo's processing time, for Retry-After
        self._slots: asyncio.Semaphore | None = None
        self._loop = None

    def slots(self) -> asyncio.Semaphore:
        """The semaphore of the running loop (a test client may run one loop per request)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(self.workers), loop
        return self._slots  # type: ignore[return-value]

    def retry_after(self) -> int:
        """Seconds until the work now admitted is likely done."""
        return max(1, math.ceil(self.service_s * (self.admitted + 1) / self.workers))

    def admit(self) -> bool:
        if self.admitted >= self.workers + self.queue:
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        self.admitted -= 1

    async def run(self, arrival: float, work: Callable[[], Any]) -> Any:
        """`work()` on a worker thread once one is free, or `Busy` past the wait budget."""
        slots = self.slots()
        if slots.locked():
            remaining = self.max_wait - (time.monotonic() - arrival)
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(slots.acquire(), remaining)
            except TimeoutError:
                raise Busy(f"the server is busy: the photo waited {self.max_wait:g} s without "
                           "a free worker", self.retry_after()) from None
        else:
            await slots.acquire()
        began = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, work)
        finally:
            self.service_s = 0.8 * self.service_s + 0.2 * (time.monotonic() - began)
            slots.release()


class Admission:
    """ASGI middleware: admit a photo request to the `WorkGate` or answer 503 at once."""

    def __init__(self, app, gate: WorkGate):
        self.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in WORK_PATHS:
            return await self.app(scope, receive, send)
        if not self.gate.admit():
            gate = self.gate
            return await busy_response(Busy(
                f"the server is busy: {gate.workers} photo(s) are being processed and "
                f"{gate.queue} waiting, its limit", gate.retry_after()))(scope, receive, send)
        scope.setdefault("state", {})["arrival"] = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.leave()


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    """The one shape of every error the server answers."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def busy_response(busy: Busy):
    return error_response(503, "busy", f"{busy.message}; retry in {busy.retry_after} s",
                          {"Retry-After": str(busy.retry_after)})


def too_large_message(limit: int) -> str:
    return f"the upload is larger than this server's limit of {megabytes(limit)} ({limit:,} bytes)"


def too_large(limit: int):
    return error_response(413, "too_large", too_large_message(limit))


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors an endpoint answers, all in the one shape."""
    what = {400: "not an image, a damaged image or an empty upload",
            404: "no such landmark in this index",
            413: "the upload is over the byte limit, or the photo over the pixel limit",
            422: "a form field is missing or of the wrong type",
            500: "the server failed (the traceback is in its log)",
            503: "busy: too many photos in the server; see Retry-After"}
    schema = {"type": "object", "required": ["error", "message"],
              "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}
    return {status: {"description": what[status],
                     "content": {"application/json": {"schema": schema}}}
            for status in statuses}


def status_code_name(status: int) -> str:
    """404 -> 'not_found', 405 -> 'method_not_allowed': the code of a framework error."""
    try:
        return re.sub(r"[^a-z]+", "_", http.HTTPStatus(status).phrase.lower()).strip("_")
    except ValueError:
        return "http_error"


def pixel_limit_message(reason: str, max_pixels: int) -> str:
    """The loader's "too large" reason, told to an HTTP client: the size and this server's
    limit in megapixels (the loader's "raise it with --max-pixels" is for the command line)."""
    size = re.search(r"(\d+)x(\d+) = ", reason)
    count = re.search(r"\((\d+) pixels\)", reason)
    if size:
        width, height = int(size.group(1)), int(size.group(2))
        found = f" ({width}x{height} = {megapixels(width * height)})"
    elif count:
        found = f" ({megapixels(int(count.group(1)))})"
    else:
        found = ""
    return (f"the photo{found} has more pixels than this server's limit of "
            f"{megapixels(max_pixels)}; send a smaller photo")


def docs_assets() -> Path:
    """Swagger UI and ReDoc as shipped in the fastapi-offline wheel (no CDN at run time)."""
    import importlib.util

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        from lookalike.extras import install_hint

        raise RuntimeError(f"the API docs need the fastapi-offline package; {install_hint('serve')}")
    return Path(spec.origin).parent / "static"


def create_app(index: str | os.PathLike, data_dir: str | os.PathLike | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               workers: int = DEFAULT_WORKERS, calibration: str | None = None,
               settings: Settings | None = None, queue: int = DEFAULT_QUEUE,
               max_wait: float = DEFAULT_MAX_WAIT) -> "FastAPI":  # noqa: F821
    """The application for one index; `data_dir` is the only place it may write."""
    from lookalike.extras import optional_import

    optional_import("fastapi", "serve")
    optional_import("python_multipart", "serve")  # uploads
    optional_import("fastapi_offline", "serve")  # the API docs' assets
    from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.formparsers import MultiPartParser

    if workers < 1 or queue < 0 or max_wait <= 0:
        raise ValueError("workers must be >= 1, queue >= 0 and max_wait > 0")
    settings = settings or Settings()
    settings.max_pixels = max_pixels
    identifier = Identifier(index, settings, calibration)
    if data_dir is not None:
        data_dir = Path(data_dir).resolve()
        (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(data_dir / "tmp")
    # Uploads up to the limit stay in memory: Starlette would otherwise spool them to disk.
    MultiPartParser.spool_max_size = max_bytes + MULTIPART_OVERHEAD
    # The heavy work runs on `workers` dedicated threads: few threads touching large buffers
    # keeps the allocator's per-thread arenas (and so memory) flat.
    executor = ThreadPoolExecutor(workers, thread_name_prefix="lookalike")
    gate = WorkGate(workers, queue, max_wait, executor)
    started = time.time()
    assets = docs_assets()

    app = FastAPI(
        title="lookalike",
        version=_version(),
        summary="Which landmark does this photo show? Offline landmark recognition.",
        description="Upload a photo (multipart field `file`) to `/identify`, or with a "
                    "`landmark` id to `/verify`. Answers are the same JSON objects as "
                    "`lookalike identify --json`. Every error is `{\"error\": code, "
                    "\"message\": text}`; 503 (busy) comes with Retry-After.",
        docs_url=None, redoc_url=None,
    )
    app.state.identifier = identifier
    app.state.gate = gate
    # Outermost last: CatchAll, then Admission (refuse before reading a body), then BodyLimit.
    app.add_middleware(BodyLimit, limit=max_bytes + MULTIPART_OVERHEAD, max_bytes=max_bytes)
    app.add_middleware(Admission, gate=gate)
    app.add_middleware(CatchAll)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        if isinstance(error.detail, dict):
            return JSONResponse(error.detail, status_code=error.status_code,
                                headers=error.headers)
        return error_response(error.status_code, status_code_name(error.status_code),
                              str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(Busy)
    async def busy(request: Request, error: Busy):
        return busy_response(error)

    async def read_upload(file: UploadFile) -> bytes:
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, {"error": "too_large",
                                      "message": too_large_message(max_bytes)})
        if not data:
            raise HTTPException(400, {"error": "empty", "message": "the uploaded file is empty"})
        return data

    def features(data: bytes, name: str, keep_image: bool = False, use_text: bool = False):
        try:
            asked = dataclasses.replace(settings, use_text=use_text or settings.use_text)
            return identifier.features_from_bytes(data, name, keep_image, asked)
        except ImageLoadError as error:
            if error.reason.startswith("too large"):
                raise HTTPException(413, {"error": "too_many_pixels", "message":
                                          pixel_limit_message(error.reason, max_pixels)}
                                    ) from None
            code = "not_an_image" if error.reason.startswith("not an image") else "bad_image"
            raise HTTPException(400, {"error": code, "message": error.reason}) from None

    def photo_name(file: UploadFile) -> str:
        return os.path.basename(file.filename or "upload")[:200]

    def arrival(request: Request) -> float:
        return request.scope.get("state", {}).get("arrival", time.monotonic())

    @app.post("/identify", summary="Which landmark is this photo?",
              responses=error_responses(400, 413, 422, 500, 503))
    async def identify(request: Request,
                       file: Annotated[UploadFile, File(description="the photo")],
                       use_gps: Annotated[bool, Form()] = False,
                       use_text: Annotated[bool, Form(description="read signboards")] = False,
                       ) -> dict[str, Any]:
        data = await read_upload(file)
        name = photo_name(file)

        def work():
            query = features(data, name, use_text=use_text)
            local = Settings(**{**settings.__dict__, "use_gps": use_gps or settings.use_gps,
                                "use_text": use_text or settings.use_text})
            answer = identifier.identify_features(name, query, local)
            return answer.to_json(identifier.names())

        return await gate.run(arrival(request), work)

    @app.post("/verify", summary="Does this photo show this landmark?",
              responses=error_responses(400, 404, 413, 422, 500, 503))
    async def verify(request: Request,
                     file: Annotated[UploadFile, File(description="the photo")],
                     landmark: Annotated[str, Form(description="landmark id (see /landmarks)")],
                     picture: Annotated[bool, Form(description="include a match picture")] = False,
                     use_gps: Annotated[bool, Form()] = False,
                     use_text: Annotated[bool, Form(description="read signboards")] = False,
                     ) -> dict[str, Any]:
        if landmark not in identifier.names():
            raise HTTPException(404, {"error": "unknown_landmark",
                                      "message": f"no landmark {landmark!r} in this index"})
        data = await read_upload(file)
        name = photo_name(file)

        def work():
            query = features(data, name, keep_image=picture, use_text=use_text)
            local = Settings(**{**settings.__dict__, "use_gps": use_gps or settings.use_gps,
                                "use_text": use_text or settings.use_text})
            answer = identifier.verify_features(name, query, landmark, local)
            result = answer.to_json(identifier.names())
            if picture and query.image is not None:
                image = identifier.match_picture(answer, query.image)
                if image is not None:
                    buffer = io.BytesIO()
                    image.save(buffer, "PNG")
                    result["match_picture"] = "data:image/png;base64," + \
                        base64.b64encode(buffer.getvalue()).decode()
            return result

        return await gate.run(arrival(request), work)

    @app.get("/landmarks", summary="The landmarks this index knows")
    def landmarks() -> dict[str, Any]:
        info = identifier.index.info()
        return {"landmarks": info["per_landmark"]}

    @app.get("/health", summary="Liveness and what is loaded")
    def health() -> dict[str, Any]:
        return {"status": "ok", "landmarks": len(identifier.names()),
                "references": len(identifier.index.references),
                "uptime_s": round(time.time() - started, 1)}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title="lookalike API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None})  # no validator badge from the internet

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        return get_redoc_html(
            openapi_url=app.openapi_url, title="lookalike API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)

    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _version() -> str:
    from lookalike import __version__

    return __version__


# -- command line ----------------------------------------------------------------------------------
def run_serve(args) -> int:
    from lookalike.cli import UsageError
    from lookalike.extras import optional_import
    from lookalike.index import GalleryError

    uvicorn = optional_import("uvicorn", "serve")  # before the index is loaded
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
    return 0


def positive_int(text: str) -> int:
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    import argparse

    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    import argparse

    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def add_command(subparsers) -> None:
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
    parser.set_defaults(handler=run_serve)


