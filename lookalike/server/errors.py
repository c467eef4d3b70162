"""The one shape of every error the server answers, `{"error": CODE, "message": TEXT}`.

Why one module: a client handles errors by their stable code, whichever layer raised them
(an ASGI guard before the body is read, the framework's own 404/405/422, a route, a gallery
edit, an unexpected exception). The shape, the statuses each endpoint documents in the
schema, and the handlers that turn every exception into that shape live here, so the guards
and the routes only raise.
"""

import http
import re
from typing import Any

from lookalike.server.settings import megabytes, megapixels

# What each status means to a client, as the schema documents it.
STATUS_MEANINGS = {
    400: "not an image, a damaged image or an empty upload",
    401: "an API key is needed (Authorization: Bearer KEY or X-API-Key: KEY), or the one sent "
         "is not known",
    403: "the key's scope does not allow this, or editing is off on this server",
    404: "no such landmark or reference photo in this index",
    409: "the gallery's state does not allow this (the landmark exists, has no photos, or the "
         "server has no data directory)",
    413: "the upload is over the byte limit, or the photo over the pixel limit",
    422: "a field is missing, of the wrong type or out of range, or the body cannot be read",
    429: "this address sent too many unknown API keys; see Retry-After",
    500: "the server failed (the traceback is in its log)",
    503: "busy: too many photos in the server; see Retry-After",
}


class Busy(Exception):
    """The server is at capacity; answered 503 with Retry-After."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    """The one shape of every error the server answers."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def api_error(status: int, code: str, message: str, headers: dict[str, str] | None = None
              ) -> Exception:
    """An exception a route raises; the handler answers it in the one shape."""
    from fastapi import HTTPException

    return HTTPException(status, {"error": code, "message": message}, headers)


def busy_response(busy: Busy):
    return error_response(503, "busy", f"{busy.message}; retry in {busy.retry_after} s",
                          {"Retry-After": str(busy.retry_after)})


def too_large_message(limit: int) -> str:
    return f"the upload is larger than this server's limit of {megabytes(limit)} ({limit:,} bytes)"


def too_large(limit: int):
    return error_response(413, "too_large", too_large_message(limit))


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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors an endpoint answers, all in the one shape."""
    from lookalike.server.models import ErrorBody

    return {status: {"description": STATUS_MEANINGS[status], "model": ErrorBody}
            for status in statuses}


def status_code_name(status: int) -> str:
    """404 -> 'not_found', 405 -> 'method_not_allowed': the code of a framework error."""
    try:
        return re.sub(r"[^a-z]+", "_", http.HTTPStatus(status).phrase.lower()).strip("_")
    except ValueError:
        return "http_error"


UNREADABLE_BODY = ("the request body cannot be read: send JSON encoded in UTF-8, or a "
                   "multipart form for photos")


def allowed_methods(request) -> str:
    """Every method some route takes on this path (Starlette names only the first route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, "methods", None) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


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
        if error.status_code == 400:  # the framework could not parse the body (not UTF-8 ...)
            return error_response(422, "invalid_request", UNREADABLE_BODY)
        if error.status_code == 405:
            return error_response(405, "method_not_allowed", "this path does not take "
                                  f"{request.method}", {"Allow": allowed_methods(request)})
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
