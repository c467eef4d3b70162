"""API keys of `lookalike serve`: who may read the gallery and who may change it.

Why keys and scopes: identifying photos and listing the gallery is what a page or a client
does; adding or removing reference photos changes every later answer, so it needs a key with
`admin` scope. Keys come from a file (`--api-keys FILE`, one `KEY SCOPE` per line) or the
environment (`LOOKALIKE_API_KEYS="KEY:SCOPE,KEY:SCOPE"`), never from a URL, where they would
end up in logs and browser history. A request sends its key in `Authorization: Bearer KEY` or
`X-API-Key: KEY`.

The default, with no keys at all: reading is open and gallery editing is off. Reading needs
a key only once a `read` key is configured; an `admin` key also reads.

No `from __future__ import annotations` here: FastAPI reads the annotations of the
dependencies below when they are defined.
"""

import hmac
import math
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

READ, ADMIN = "read", "admin"
SCOPES = (READ, ADMIN)
ENVIRONMENT_VARIABLE = "LOOKALIKE_API_KEYS"
MIN_KEY_LENGTH = 16


class ApiKeyError(ValueError):
    """A key file or variable that cannot be used; the message names the line and the fix."""


def parse_key_line(line: str, where: str) -> tuple[str, str] | None:
    """`KEY SCOPE` (or `KEY:SCOPE`) -> (key, scope); blank lines and `#` comments -> None."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    if any(character.isspace() for character in text):
        parts = text.split()
    else:
        key, _, scope = text.rpartition(":")
        parts = [key, scope] if key else [text]
    if len(parts) != 2 or parts[1] not in SCOPES:
        raise ApiKeyError(f"{where}: expected 'KEY SCOPE' with SCOPE read or admin, "
                          f"got {text[:40]!r}")
    key, scope = parts
    if len(key) < MIN_KEY_LENGTH:
        raise ApiKeyError(f"{where}: a key must have at least {MIN_KEY_LENGTH} characters "
                          "(make one with `python -c 'import secrets; "
                          "print(secrets.token_urlsafe(24))'`)")
    return key, scope


def read_key_file(path: str | os.PathLike) -> dict[str, str]:
    """The keys of a key file: key -> scope."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ApiKeyError(f"{path}: cannot read the API key file ({error.strerror})") from None
    keys = {}
    for number, line in enumerate(lines, 1):
        parsed = parse_key_line(line, f"{path}:{number}")
        if parsed is not None:
            keys[parsed[0]] = parsed[1]
    return keys


def keys_from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The keys of `LOOKALIKE_API_KEYS`: comma-separated `KEY:SCOPE` pairs."""
    keys = {}
    for number, item in enumerate(environ.get(ENVIRONMENT_VARIABLE, "").split(","), 1):
        parsed = parse_key_line(item, f"{ENVIRONMENT_VARIABLE} item {number}")
        if parsed is not None:
            keys[parsed[0]] = parsed[1]
    return keys


@dataclass(frozen=True)
class KeyRing:
    """The configured keys and what each request may do."""

    keys: Mapping[str, str]

    @property
    def read_open(self) -> bool:
        """Reading needs no key until a read key is configured."""
        return READ not in self.keys.values()

    @property
    def admin_enabled(self) -> bool:
        return ADMIN in self.keys.values()

    def scope_of(self, key: str | None) -> str | None:
        """The scope of a presented key (compared in constant time), None if unknown."""
        if not key:
            return None
        found = None
        for known, scope in self.keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                found = scope
        return found


UNREADABLE = "unreadable key"  # holds whitespace, which no configured key does: never known


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request sent in `Authorization: Bearer KEY` or `X-API-Key: KEY`; None when it
    sent neither header.

    A header that is sent counts, even when it cannot be read (another scheme, an empty
    value) or names another key than the other header: the answer is then `UNREADABLE`, which
    no key matches, so the request is refused (401) instead of passing as anonymous or on the
    strength of the other header.
    """
    presented = set()
    if authorization is not None:
        kind, _, value = authorization.strip().partition(" ")
        readable = kind.lower() == "bearer" and value.strip()
        presented.add(value.strip() if readable else UNREADABLE)
    if x_api_key is not None:
        presented.add(x_api_key.strip() or UNREADABLE)
    if not presented:
        return None
    return presented.pop() if len(presented) == 1 else UNREADABLE


class FailedKeyThrottle:
    """Slows a client that tries key after key: after `limit` unknown keys from one address
    within `window_s` seconds, that address is refused (429, Retry-After) until the oldest
    failure leaves the window.

    Why: a key of 16+ random characters cannot be guessed, but a server should still not
    answer an unbounded stream of guesses, and a flood of wrong keys is worth a clear signal
    in the client's log. Only requests that present a key count or are refused: open reading
    without a key is never throttled. Memory is bounded (`max_clients` addresses, oldest
    forgotten first); the state is per server process and is lost on restart."""

    def __init__(self, limit: int = 10, window_s: float = 60.0, max_clients: int = 10_000,
                 clock=time.monotonic):
        self.limit, self.window_s, self.max_clients, self.clock = limit, window_s, max_clients, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may present a key again, or None if it may now."""
        with self._lock:
            failures = self._recent(client)
            if failures is None or len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window_s - self.clock()))

    def failed(self, client: str) -> None:
        """Record one unknown key from `client`."""
        with self._lock:
            failures = self._recent(client)
            if failures is None:
                if len(self._failures) >= self.max_clients:
                    del self._failures[next(iter(self._failures))]
                failures = self._failures[client] = deque()
            failures.append(self.clock())

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        horizon = self.clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures


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


def client_address(request) -> str:
    """The address a request came from, as the throttle counts it (the proxy's, behind one)."""
    return request.client.host if request.client else "unknown"


class KeyGuard:
    """The keys as FastAPI sees them: dependencies that read a request's key and admit it.

    `key_from_headers` is declared through the two security schemes (bearer, X-API-Key), so
    the schema and /docs offer to send a key; `needs(scope)` refuses a request whose key may
    not do what the endpoint does (401, 403), and `screen` refuses an address that sent too
    many unknown keys (429). FastAPI is imported here only when a server is built.
    """

    def __init__(self, keys: KeyRing, throttle: FailedKeyThrottle):
        self.keys = keys
        self.throttle = throttle
        self.key_from_headers = key_from_headers_dependency()

    def screen(self, client: str, key: str | None) -> None:
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
        from typing import Annotated

        from fastapi import Depends, HTTPException, Request

        keys = self.keys

        def check(request: Request, key: Annotated[str | None, Depends(self.key_from_headers)]):
            self.screen(client_address(request), key)
            problem = access_problem(keys, scope, key)
            if problem is not None:
                status, code, message = problem
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                raise HTTPException(status, {"error": code, "message": message}, headers)

        return Depends(check)


def key_from_headers_dependency():
    """`key_from_headers`: the request's API key from `Authorization: Bearer` or `X-API-Key`,
    declared as the two security schemes, so that /docs offers to send one."""
    from typing import Annotated

    from fastapi import Depends, Request
    from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: KEY")

    def key_from_headers(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
            x_api_key: Annotated[str | None, Depends(header)]) -> str | None:
        # The schemes declare the headers; the raw headers tell an unreadable one from none.
        return presented_key(request.headers.get("authorization"),
                             request.headers.get("x-api-key"))

    return key_from_headers
