"""What every route of one server shares: its settings, live gallery, work gate and keys.

Why an object: the routes are registered by area (`lookalike.server.routes`), each by a
function taking the app and this context, so no route reads module-level state and two apps
in one process (tests do that) never share a gallery or a gate.
"""

from dataclasses import dataclass
from typing import Any

from lookalike.server.auth import KeyGuard, KeyRing
from lookalike.server.guards import WorkGate
from lookalike.server.settings import ServerSettings


@dataclass
class Context:
    """What the endpoints share: the settings, the live gallery, the work gate, the keys."""

    settings: ServerSettings
    gallery: Any  # LiveIndex (imported with the app)
    gate: WorkGate
    guard: KeyGuard
    started: float  # time.time() when the app was built, for /health's uptime

    @property
    def keys(self) -> KeyRing:
        return self.guard.keys

    def needs(self, scope: str):
        """The dependency admitting a request with a key of `scope` (see `KeyGuard.needs`)."""
        return self.guard.needs(scope)

    def open_reading(self) -> dict[str, Any]:
        """The schema's word that reading needs no key on this server (an empty security
        requirement beside the two schemes), for the read endpoints' `openapi_extra`."""
        return {"security": [{}]} if self.keys.read_open else {}
