"""`lookalike serve`: the identify/verify/gallery API over HTTP (FastAPI) and a web app.

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
it uses, and reference photos added over HTTP, go there) and, for gallery edits with an
admin key (`lookalike.server.auth`), the index file itself. Responses are typed by the models in
`lookalike.server.models`; the live gallery and its atomic edits are `lookalike.server.live_gallery`.
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
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from lookalike.gallery.folders import NEGATIVES
from lookalike.gallery.identify import Identifier, Settings
from lookalike.imaging.loading import ImageLoadError
from lookalike.server.auth import ADMIN, READ, FailedKeyThrottle, KeyRing, presented_key
from lookalike.server.settings import (
    ServerSettings,
    megabytes,
    megapixels,
)

# FastAPI and Starlette are imported inside the functions that use them, so that the rest of
# the command line does not pay for importing them. (No `from __future__ import annotations`
# here: FastAPI reads the endpoint annotations at definition time.)

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the small form fields around the files
WORK_PATHS = frozenset({"/identify", "/identify/batch", "/verify"})  # requests taking a worker
PHOTO_UPLOAD = re.compile(r"/landmarks/[^/]+/photos")  # adding reference photos takes one too
DOCS_ASSETS = "/docs-assets"


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
        if scope["type"] != "http" or not takes_worker(scope["method"], scope["path"]):
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


def takes_worker(method: str, path: str) -> bool:
    """Whether a request carries photos to process (and so must be admitted to the gate)."""
    return method == "POST" and (path in WORK_PATHS or PHOTO_UPLOAD.fullmatch(path) is not None)


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
            401: "an API key is needed (Authorization: Bearer KEY or X-API-Key: KEY), or "
                 "the one sent is not known",
            403: "the key's scope does not allow this, or editing is off on this server",
            404: "no such landmark or reference photo in this index",
            409: "the gallery's state does not allow this (the landmark exists, has no "
                 "photos, or the server has no data directory)",
            413: "the upload is over the byte limit, or the photo over the pixel limit",
            422: "a form field is missing or of the wrong type",
            429: "this address sent too many unknown API keys; see Retry-After",
            500: "the server failed (the traceback is in its log)",
            503: "busy: too many photos in the server; see Retry-After"}
    from lookalike.server.models import ErrorBody

    return {status: {"description": what[status], "model": ErrorBody} for status in statuses}


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


# -- the application -------------------------------------------------------------------------------
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
    )
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
    context = Context(settings, gallery, gate, KeyRing(dict(settings.api_keys)), time.time(),
                      key_from_headers_dependency(), throttle)
    add_photo_routes(app, context)
    add_gallery_routes(app, context)
    add_reference_routes(app, context)
    add_page_routes(app)
    return app


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


@dataclass
class Context:
    """What the endpoints share: the settings, the live gallery, the work gate, the keys."""

    settings: ServerSettings
    gallery: Any  # LiveIndex (imported with the app)
    gate: WorkGate
    keys: KeyRing
    started: float
    key_from_headers: Callable[..., str | None]  # a dependency: the request's API key
    throttle: FailedKeyThrottle

    def screen_key(self, client: str, key: str | None) -> None:
        """Refuse (429) an address that sent too many unknown keys; count this one if unknown."""
        from fastapi import HTTPException

        if key is None:
            return
        wait = self.throttle.retry_after(client)
        if wait is not None:
            raise HTTPException(429, {"error": "too_many_failed_keys", "message": (
                f"this address sent {self.throttle.limit} unknown API keys within "
                f"{self.throttle.window_s:g} s; try again in {wait} s")}, {"Retry-After": str(wait)})
        if self.keys.scope_of(key) is None:
            self.throttle.failed(client)

    def needs(self, scope: str):
        """A FastAPI dependency that admits a request holding a key of `scope` (or better)."""
        from fastapi import Depends, HTTPException, Request

        keys = self.keys

        def check(request: Request, key: Annotated[str | None, Depends(self.key_from_headers)]):
            self.screen_key(client_address(request), key)
            problem = access_problem(keys, scope, key)
            if problem is not None:
                status, code, message = problem
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                raise HTTPException(status, {"error": code, "message": message}, headers)

        return Depends(check)


def client_address(request) -> str:
    """The address a request came from, as the throttle counts it (the proxy's, behind one)."""
    return request.client.host if request.client else "unknown"


def key_from_headers_dependency():
    """`key_from_headers`: the request's API key from `Authorization: Bearer` or `X-API-Key`,
    declared as the two security schemes, so that /docs offers to send one."""
    from fastapi import Depends
    from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: KEY")

    def key_from_headers(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
            x_api_key: Annotated[str | None, Depends(header)]) -> str | None:
        return presented_key(f"Bearer {credentials.credentials}" if credentials else None,
                             x_api_key)

    return key_from_headers


def access_problem(keys: KeyRing, scope: str, key: str | None) -> tuple[int, str, str] | None:
    """Why a request with `key` may not do what needs `scope` (status, code, message), or None."""
    held = keys.scope_of(key)
    if key is not None and held is None:
        return 401, "unauthorized", "this API key is not known to the server"
    if scope == READ and (keys.read_open or held is not None):
        return None
    if scope == ADMIN and not keys.admin_enabled:
        return 403, "editing_disabled", ("gallery editing is off on this server: start it "
                                         "with --api-keys FILE holding a key with admin scope")
    if held is None:
        return 401, "unauthorized", (f"this needs an API key with {scope} scope, sent as "
                                     "'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    if scope == ADMIN and held != ADMIN:
        return 403, "forbidden", "this API key has read scope; changing the gallery needs admin"
    return None


def install_error_handlers(app) -> None:
    """Every error the framework or the library raises, in the one shape."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from lookalike.server.live_gallery import EditError

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

    @app.exception_handler(EditError)
    async def edit_error(request: Request, error: EditError):
        return error_response(error.status, error.code, error.message)


def api_error(status: int, code: str, message: str) -> Exception:
    from fastapi import HTTPException

    return HTTPException(status, {"error": code, "message": message})


async def read_upload(file, max_bytes: int) -> bytes:
    """The uploaded file's bytes, or the 413 / 400 a client gets for it."""
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise api_error(413, "too_large", too_large_message(max_bytes))
    if not data:
        raise api_error(400, "empty", "the uploaded file is empty")
    return data


def photo_name(file) -> str:
    return os.path.basename(file.filename or "upload")[:200]


def arrival(request) -> float:
    return request.scope.get("state", {}).get("arrival", time.monotonic())


def query_features(identifier: Identifier, data: bytes, name: str, settings: Settings,
                   keep_image: bool = False):
    """The photo's features, or the 400 / 413 its decoding failure answers."""
    try:
        return identifier.features_from_bytes(data, name, keep_image, settings)
    except ImageLoadError as error:
        if error.reason.startswith("too large"):
            raise api_error(413, "too_many_pixels",
                            pixel_limit_message(error.reason, settings.max_pixels)) from None
        code = "not_an_image" if error.reason.startswith("not an image") else "bad_image"
        raise api_error(400, code, error.reason) from None


def request_settings(settings: ServerSettings, use_gps: bool, use_text: bool) -> Settings:
    return dataclasses.replace(settings.identify_settings(), use_gps=use_gps or settings.use_gps,
                               use_text=use_text)


def match_picture_url(identifier: Identifier, answer, image) -> str | None:
    picture = identifier.match_picture(answer, image)
    if picture is None:
        return None
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def add_photo_routes(app, context: Context) -> None:
    """POST /identify, /identify/batch and /verify: the questions about photos."""
    from fastapi import File, Form, Request, UploadFile

    from lookalike.server.models import BatchAnswer, IdentifyAnswer, answer_model

    gallery, gate, settings = context.gallery, context.gate, context.settings

    def identify_one(data: bytes, name: str, asked: Settings):
        with gallery.reading() as identifier:
            query = query_features(identifier, data, name, asked)
            answer = identifier.identify_features(name, query, asked)
            return answer_model(answer, identifier.index)

    @app.post("/identify", summary="Which landmark is this photo?",
              dependencies=[context.needs(READ)],
              responses=error_responses(400, 401, 413, 422, 429, 500, 503))
    async def identify(request: Request,
                       file: Annotated[UploadFile, File(description="the photo")],
                       use_gps: Annotated[bool, Form()] = False,
                       use_text: Annotated[bool, Form(description="read signboards")] = False,
                       ) -> IdentifyAnswer:
        data = await read_upload(file, settings.max_bytes)
        asked = request_settings(settings, use_gps, use_text)
        return await gate.run(arrival(request), lambda: identify_one(data, photo_name(file),
                                                                     asked))

    @app.post("/identify/batch", summary="Which landmark is each of these photos?",
              dependencies=[context.needs(READ)],
              responses=error_responses(401, 413, 422, 429, 500, 503))
    async def identify_batch(request: Request,
                             files: Annotated[list[UploadFile], File(description="the photos")],
                             use_gps: Annotated[bool, Form()] = False,
                             use_text: Annotated[bool, Form()] = False) -> BatchAnswer:
        if len(files) > settings.max_files:
            raise api_error(422, "too_many_files", f"{len(files)} files in one request; this "
                            f"server takes at most {settings.max_files}")
        uploads = [(photo_name(file), await read_upload_or_error(file, settings.max_bytes))
                   for file in files]
        asked = request_settings(settings, use_gps, use_text)

        def answer_one(data: bytes, name: str):
            return identify_one(data, name, asked)

        return await gate.run(arrival(request), lambda: batch_answer(uploads, answer_one))

    @app.post("/verify", summary="Does this photo show this landmark?",
              dependencies=[context.needs(READ)],
              responses=error_responses(400, 401, 404, 409, 413, 422, 429, 500, 503))
    async def verify(request: Request,
                     file: Annotated[UploadFile, File(description="the photo")],
                     landmark: Annotated[str, Form(description="landmark id (see /landmarks)")],
                     picture: Annotated[bool, Form(description="include a match picture")] = False,
                     use_gps: Annotated[bool, Form()] = False,
                     use_text: Annotated[bool, Form(description="read signboards")] = False,
                     ) -> IdentifyAnswer:
        gallery.require_landmark(landmark)
        if not gallery.index.references_of(landmark):
            raise api_error(409, "no_references", f"landmark {landmark!r} has no reference "
                            "photos yet; add some with POST /landmarks/{id}/photos")
        data = await read_upload(file, settings.max_bytes)
        name = photo_name(file)
        asked = request_settings(settings, use_gps, use_text)

        def work():
            with gallery.reading() as identifier:
                query = query_features(identifier, data, name, asked, keep_image=picture)
                answer = identifier.verify_features(name, query, landmark, asked)
                result = answer_model(answer, identifier.index)
                if picture and query.image is not None:
                    result.match_picture = match_picture_url(identifier, answer, query.image)
                return result

        return await gate.run(arrival(request), work)


async def read_upload_or_error(file, max_bytes: int) -> bytes | dict[str, str]:
    """A batch file's bytes, or its error entry (one bad file must not fail the batch)."""
    from fastapi import HTTPException

    try:
        return await read_upload(file, max_bytes)
    except HTTPException as error:
        return error.detail


def batch_answer(uploads: list[tuple[str, bytes | dict[str, str]]],
                 answer_one: Callable[[bytes, str], Any]):
    """One `BatchItem` per upload, in order: its answer, or its error in the one shape."""
    from fastapi import HTTPException

    from lookalike.server.models import BatchAnswer, BatchItem, ErrorBody

    results = []
    for name, data in uploads:
        if isinstance(data, dict):
            results.append(BatchItem(photo=name, error=ErrorBody(**data)))
            continue
        try:
            results.append(BatchItem(photo=name, answer=answer_one(data, name)))
        except HTTPException as error:
            results.append(BatchItem(photo=name, error=ErrorBody(**error.detail)))
        except Exception:  # a failure in one photo's scoring costs that photo's answer only
            log.exception("batch photo %s failed", name)
            results.append(BatchItem(photo=name, error=ErrorBody(
                error="internal_error",
                message="the server failed on this photo; the error is in its log")))
    failed = sum(item.error is not None for item in results)
    return BatchAnswer(results=results, answered=len(results) - failed, failed=failed)


def add_gallery_routes(app, context: Context) -> None:
    """The landmarks and reference photos: listed with a read key, edited with an admin key."""
    from lookalike.gallery.folders import Landmark
    from lookalike.server.models import (
        LandmarkChanges,
        LandmarkInfo,
        LandmarkList,
        NewLandmark,
        Removed,
        landmark_model,
    )

    gallery = context.gallery
    read, admin = [context.needs(READ)], [context.needs(ADMIN)]

    @app.get("/landmarks", summary="The landmarks this index knows, with their photos",
             dependencies=read, responses=error_responses(401, 429))
    def landmarks() -> LandmarkList:
        with gallery.reading():
            return LandmarkList(landmarks=[landmark_model(gallery.index, lid)
                                           for lid in gallery.landmark_ids()],
                                negatives=len(gallery.index.references_of(NEGATIVES)))

    @app.get("/landmarks/{landmark_id}", summary="One landmark", dependencies=read,
             responses=error_responses(401, 404, 422, 429))
    def landmark(landmark_id: str) -> LandmarkInfo:
        with gallery.reading():
            gallery.require_landmark(landmark_id)
            return landmark_model(gallery.index, landmark_id)

    @app.post("/landmarks", summary="Add a landmark (admin)", status_code=201,
              dependencies=admin, responses=error_responses(401, 403, 409, 422, 429))
    def create_landmark(new: NewLandmark) -> LandmarkInfo:
        location = (new.location.lat, new.location.lon) if new.location else None
        gallery.create_landmark(Landmark(new.id, dict(new.names), location))
        return landmark_model(gallery.index, new.id)

    @app.patch("/landmarks/{landmark_id}", summary="Edit a landmark's names or location (admin)",
               dependencies=admin, responses=error_responses(401, 403, 404, 422, 429))
    def edit_landmark(landmark_id: str, changes: LandmarkChanges) -> LandmarkInfo:
        location = (changes.location.lat, changes.location.lon) if changes.location else None
        gallery.edit_landmark(landmark_id, dict(changes.names) if changes.names is not None
                              else None, location, "location" in changes.model_fields_set)
        return landmark_model(gallery.index, landmark_id)

    @app.delete("/landmarks/{landmark_id}", summary="Remove a landmark and its photos (admin)",
                dependencies=admin, responses=error_responses(401, 403, 404, 422, 429))
    def remove_landmark(landmark_id: str) -> Removed:
        return Removed(landmarks=[landmark_id],
                       references=gallery.remove_landmark(landmark_id))



def add_reference_routes(app, context: Context) -> None:
    """Reference photos (added, removed, shown), the key check and the health report."""
    from fastapi import Depends, File, Query, Request, Response, UploadFile

    from lookalike.server.live_gallery import Upload
    from lookalike.server.models import Health, KeyCheck, PhotosAdded, Removed, reference_model

    gallery, gate, settings = context.gallery, context.gate, context.settings
    read, admin = [context.needs(READ)], [context.needs(ADMIN)]

    @app.post("/landmarks/{landmark_id}/photos", status_code=201, dependencies=admin,
              summary="Add reference photos to a landmark, all or none (admin)",
              responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429, 500, 503))
    async def add_photos(request: Request, landmark_id: str,
                         files: Annotated[list[UploadFile], File(description="the photos")]
                         ) -> PhotosAdded:
        if len(files) > settings.max_files:
            raise api_error(422, "too_many_files", f"{len(files)} files in one request; this "
                            f"server takes at most {settings.max_files}")
        uploads = [Upload(photo_name(file), await read_upload(file, settings.max_bytes))
                   for file in files]
        added, skipped = await gate.run(arrival(request),
                                        lambda: gallery.add_photos(landmark_id, uploads))
        return PhotosAdded(landmark=landmark_id, skipped=skipped,
                           added=[reference_model(gallery.index, rid) for rid in added])

    @app.delete("/references/{reference_id}", summary="Remove one reference photo (admin)",
                dependencies=admin, responses=error_responses(401, 403, 404, 422, 429))
    def remove_reference(reference_id: int) -> Removed:
        gallery.remove_reference(reference_id)
        return Removed(landmarks=[], references=[reference_id])

    @app.get("/references/{reference_id}/thumbnail", dependencies=read,
             summary="A reference photo, scaled down (JPEG)", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG"},
                        **error_responses(401, 404, 422, 429)})
    def thumbnail(request: Request, reference_id: int,
                  size: Annotated[int, Query(ge=32, le=1600, description="long side")] = 256):
        data, digest = gallery.thumbnail(reference_id, size)
        # Ids can be reused after a removal: the browser revalidates by the photo's content.
        headers = {"Cache-Control": "private, no-cache", "ETag": f'"{digest}-{size}"'}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="image/jpeg", headers=headers)

    @app.get("/auth", summary="What the presented API key may do",
             responses=error_responses(401, 429))
    def auth(request: Request,
             key: Annotated[str | None, Depends(context.key_from_headers)]) -> KeyCheck:
        context.screen_key(client_address(request), key)
        scope = context.keys.scope_of(key)
        if key is not None and scope is None:
            raise api_error(401, "unauthorized", "this API key is not known to the server")
        return KeyCheck(scope=scope or "none", read_open=context.keys.read_open,
                        admin_enabled=context.keys.admin_enabled)

    @app.get("/health", summary="Liveness, what is loaded, the limits and who may do what")
    def health() -> Health:
        return health_model(context)


def health_model(context: Context):
    from lookalike.server.models import Access, Health, Limits

    index, settings = context.gallery.index, context.settings
    return Health(status="ok", landmarks=len(context.gallery.landmark_ids()),
                  references=len(index.references) - len(index.references_of(NEGATIVES)),
                  uptime_s=round(time.time() - context.started, 1),
                  limits=Limits(max_bytes=settings.max_bytes, max_pixels=settings.max_pixels,
                                max_files=settings.max_files),
                  access=Access(read="open" if context.keys.read_open else "key",
                                admin="key" if context.keys.admin_enabled else "disabled"))


def add_page_routes(app) -> None:
    """The web app (two pages and their static files) and the offline API docs."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/gallery", include_in_schema=False)
    def gallery_page():
        return FileResponse(WEB_DIR / "gallery.html")

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

    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_assets()), name="docs-assets")
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")


def _version() -> str:
    from lookalike import __version__

    return __version__
