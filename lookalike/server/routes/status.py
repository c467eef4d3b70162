"""GET /health and GET /auth: whether the server is up, what it holds, and who may do what.

Why a pair: both are what a client or a page asks before it sends photos (the limits, whether
reading needs a key, whether the key it holds may edit), and neither touches a photo.
"""

import time

from lookalike.gallery.folders import NEGATIVES
from lookalike.server.auth import client_address
from lookalike.server.context import Context
from lookalike.server.errors import api_error, error_responses


def add_status_routes(app, context: Context) -> None:
    """GET /auth and GET /health."""
    from typing import Annotated

    from fastapi import Depends, Request

    from lookalike.server.models import Health, KeyCheck

    @app.get("/auth", summary="What the presented API key may do",
             responses=error_responses(401, 429), openapi_extra={"security": [{}]})
    def get_auth(request: Request,
             key: Annotated[str | None, Depends(context.guard.key_from_headers)]) -> KeyCheck:
        context.guard.screen(client_address(request), key)
        scope = context.keys.scope_of(key)
        if key is not None and scope is None:
            raise api_error(401, "unauthorized", "this API key is not known to the server")
        return KeyCheck(scope=scope or "none", read_open=context.keys.read_open,
                        admin_enabled=context.keys.admin_enabled)

    @app.get("/health", summary="Liveness, what is loaded, the limits and who may do what")
    def health() -> Health:
        return health_model(context)


def health_model(context: Context):
    """The /health answer: counts, uptime, limits and access."""
    from lookalike.server.models import Access, Health, Limits

    index, settings = context.gallery.index, context.settings
    return Health(status="ok", landmarks=len(context.gallery.landmark_ids()),
                  references=len(index.references) - len(index.references_of(NEGATIVES)),
                  uptime_s=round(time.time() - context.started, 1),
                  limits=Limits(max_bytes=settings.max_bytes, max_pixels=settings.max_pixels,
                                max_files=settings.max_files),
                  access=Access(read="open" if context.keys.read_open else "key",
                                admin="key" if context.keys.admin_enabled else "disabled"))
