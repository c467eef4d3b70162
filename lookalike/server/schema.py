"""The OpenAPI document, as tools written elsewhere read it: client generators and fuzzers.

Why a post-processing step: FastAPI writes upload fields in OpenAPI 3.1's words
(`contentMediaType: application/octet-stream`), which `openapi-python-client` types as text
and sends as text; `format: binary` makes them files in every generator. A dict whose keys
the server validates by pattern (`patternProperties`) allows no other key, which the schema
must say (`additionalProperties: false`), or a fuzzer sends keys the server refuses.
Operation ids are the endpoint functions' names (`identify`, `list_landmarks`, ...), so a
generated client reads like the API. Everything else (statuses, constraints, security) is
declared where the routes are.
"""

from typing import Any

BINARY = {"type": "string", "format": "binary"}
PHOTO = {**BINARY, "minLength": 1}  # an upload the server refuses when empty (400 empty)


def operation_id(route) -> str:
    """The generated client's function name: the endpoint's own (`identify`, `get_landmark`)."""
    return route.name


def client_friendly(node: Any) -> Any:
    """The schema with upload fields as `format: binary` and pattern-keyed dicts closed."""
    if isinstance(node, list):
        return [client_friendly(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: client_friendly(value) for key, value in node.items()}
    if node.get("contentMediaType") == "application/octet-stream":
        del node["contentMediaType"]
        node["format"] = "binary"
    if "patternProperties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


def install_schema(app) -> None:
    """Make `app.openapi()` (and so /openapi.json) return the client-friendly document."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                   description=app.description, routes=app.routes,
                                   openapi_version=app.openapi_version)
            app.openapi_schema = client_friendly(document)
        return app.openapi_schema

    app.openapi = openapi
