"""`lookalike serve`: the identify/verify API over HTTP (FastAPI) and a web page for people.

Why these guards: the server takes photos from strangers. The request body is capped while it
streams in (before any parsing), uploads are held in memory (never spooled to disk), the
content is decoded by the same loader as the CLI (which sniffs the bytes and ignores the file
name and the Content-Type), pixels are capped, and the heavy work runs at most `workers` at a
time so that memory stays flat under load. Errors are JSON: `{"error": CODE, "message": ...}`.
The only folder the server may write to is its data directory (temporary files of the
libraries it uses are pointed there).
"""

import asyncio
import base64
import dataclasses
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from lookalike.identify import Identifier, Settings
from lookalike.loading import ImageLoadError

# FastAPI and Starlette are imported inside the functions that use them, so that the rest of
# the command line does not pay for importing them. (No `from __future__ import annotations`
# here: FastAPI reads the endpoint annotations at definition time.)

WEB_DIR = Path(__file__).resolve().parent / "web"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the small form fields around the file


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes, by header or while streaming."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await too_large(self.limit)(scope, receive, send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large(self.limit)(scope, receive, send)


def error_response(status: int, code: str, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": code, "message": message}, status_code=status)


def too_large(limit: int):
    return error_response(413, "too_large",
                          f"the upload is larger than the limit of {limit:,} bytes")


def create_app(index: str | os.PathLike, data_dir: str | os.PathLike | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               workers: int = 2, calibration: str | None = None,
               settings: Settings | None = None) -> "FastAPI":  # noqa: F821
    """The application for one index; `data_dir` is the only place it may write."""
    from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.formparsers import MultiPartParser

    settings = settings or Settings()
    settings.max_pixels = max_pixels
    identifier = Identifier(index, settings, calibration)
    if data_dir is not None:
        data_dir = Path(data_dir).resolve()
        (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(data_dir / "tmp")
    # Uploads up to the limit stay in memory: Starlette would otherwise spool them to disk.
    MultiPartParser.spool_max_size = max_bytes + MULTIPART_OVERHEAD
    # The heavy work runs on `workers` dedicated threads: a bounded queue, and few threads
    # touching large buffers keeps the allocator's per-thread arenas (and so memory) flat.
    executor = ThreadPoolExecutor(workers, thread_name_prefix="lookalike")
    started = time.time()

    app = FastAPI(
        title="lookalike",
        version=_version(),
        summary="Which landmark does this photo show? Offline landmark recognition.",
        description="Upload a photo (multipart field `file`) to `/identify`, or with a "
                    "`landmark` id to `/verify`. Answers are the same JSON objects as "
                    "`lookalike identify --json`.",
    )
    app.state.identifier = identifier
    app.add_middleware(BodyLimit, limit=max_bytes + MULTIPART_OVERHEAD)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        if isinstance(error.detail, dict):
            return JSONResponse(error.detail, status_code=error.status_code)
        return error_response(error.status_code, "http_error", str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return error_response(422, "invalid_request", problems)

    async def read_upload(file: UploadFile) -> bytes:
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, {"error": "too_large", "message":
                                      f"the upload is larger than the limit of {max_bytes:,} bytes"})
        if not data:
            raise HTTPException(400, {"error": "empty", "message": "the uploaded file is empty"})
        return data

    def features(data: bytes, name: str, keep_image: bool = False, use_text: bool = False):
        try:
            asked = dataclasses.replace(settings, use_text=use_text or settings.use_text)
            return identifier.features_from_bytes(data, name, keep_image, asked)
        except ImageLoadError as error:
            status = 413 if error.reason.startswith("too large") else 415
            code = "too_many_pixels" if status == 413 else "not_an_image"
            raise HTTPException(status, {"error": code, "message": error.reason}) from None

    def photo_name(file: UploadFile) -> str:
        return os.path.basename(file.filename or "upload")[:200]

    @app.post("/identify", summary="Which landmark is this photo?")
    async def identify(file: Annotated[UploadFile, File(description="the photo")],
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

        return await asyncio.get_running_loop().run_in_executor(executor, work)

    @app.post("/verify", summary="Does this photo show this landmark?")
    async def verify(file: Annotated[UploadFile, File(description="the photo")],
                     landmark: Annotated[str, Form(description="landmark id (see /landmarks)")],
                     picture: Annotated[bool, Form(description="include a match picture")] = False,
                     use_gps: Annotated[bool, Form()] = False,
                     use_text: Annotated[bool, Form(description="read signboards")] = False,
                     ) -> dict[str, Any]:
        if landmark not in identifier.index.landmarks:
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

        return await asyncio.get_running_loop().run_in_executor(executor, work)

    @app.get("/landmarks", summary="The landmarks this index knows")
    def landmarks() -> dict[str, Any]:
        info = identifier.index.info()
        return {"landmarks": info["per_landmark"]}

    @app.get("/health", summary="Liveness and what is loaded")
    def health() -> dict[str, Any]:
        return {"status": "ok", "landmarks": len(identifier.index.landmarks),
                "references": len(identifier.index.references),
                "uptime_s": round(time.time() - started, 1)}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _version() -> str:
    from lookalike import __version__

    return __version__


# -- command line ----------------------------------------------------------------------------------
def run_serve(args) -> int:
    import uvicorn

    from lookalike.cli import UsageError
    from lookalike.index import GalleryError

    try:
        app = create_app(args.index, args.data_dir, args.max_bytes, args.max_pixels,
                         args.workers, args.calibration,
                         Settings(threshold=args.threshold, use_gps=args.use_gps))
    except GalleryError as error:
        raise UsageError(str(error)) from None
    print(f"serving {args.index} on http://{args.host}:{args.port}/ (API docs at /docs)",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


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
                        help=f"largest upload in bytes (default {DEFAULT_MAX_BYTES:,})")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest photo in pixels (default {DEFAULT_MAX_PIXELS:,})")
    parser.add_argument("--workers", type=int, default=2,
                        help="photos processed at once (default 2)")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--use-gps", action="store_true")
    parser.add_argument("--calibration", metavar="FILE.json")
    parser.set_defaults(handler=run_serve)


