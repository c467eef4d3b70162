"""ASGI guards of `lookalike serve`: the body's size and the number of photos in the server.

Why these guards: the server takes photos from strangers. The request body is capped while it
streams in (before any parsing, with or without a Content-Length), and the server sheds load
instead of queueing without bound: at most `workers` photos are processed at once and `queue`
more wait, each at most `max_wait` seconds; past that it answers 503 with Retry-After at
once, so an accepted photo is answered in bounded time and memory stays flat. An unexpected
exception answers 500 in the one error shape, with its traceback in the log.
"""

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lookalike.server.errors import Busy, busy_response, error_response, too_large

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the small form fields around the files
WORK_PATHS = frozenset({"/identify", "/identify/batch", "/verify"})  # requests taking a worker
PHOTO_UPLOAD = re.compile(r"/landmarks/[^/]+/photos")  # adding reference photos takes one too


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




def arrival(request) -> float:
    """When the gate admitted this request (its wait budget counts from there)."""
    return request.scope.get("state", {}).get("arrival", time.monotonic())
