"""The web app (two pages and their static files) and the API docs, all served offline.

Why offline: the server may run where nothing outside can be reached, and a page that pulls a
script or an image from a CDN leaks who uses it. Swagger UI and ReDoc come from the assets
installed with the `fastapi-offline` package; the web app is `lookalike/server/web/`.
"""

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DOCS_ASSETS = "/docs-assets"
# The docs pages may load nothing from elsewhere, and the browser is told so. ReDoc's bundle
# still asks for its maker's logo at cdn.redoc.ly (a browser reports the attempt even when the
# policy blocks it), so the bundle is served with that address emptied: the image fails, and
# ReDoc then hides it by design.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
DOCS_POLICY = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
               "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
               "worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:"}


def docs_assets() -> Path:
    """Swagger UI and ReDoc as shipped in the fastapi-offline wheel (no CDN at run time)."""
    import importlib.util

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        from lookalike.extras import install_hint

        raise RuntimeError(f"the API docs need the fastapi-offline package; {install_hint('serve')}")
    return Path(spec.origin).parent / "static"


def add_page_routes(app) -> None:
    """GET /, /gallery, /docs, /redoc and the static files they load."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import FileResponse, Response
    from fastapi.staticfiles import StaticFiles

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/gallery", include_in_schema=False)
    def gallery_page():
        return FileResponse(WEB_DIR / "gallery.html")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui():
        return offline(get_swagger_ui_html(
            openapi_url=app.openapi_url, title="lookalike API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None}))  # no validator badge from the internet

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        return offline(get_redoc_html(
            openapi_url=app.openapi_url, title="lookalike API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False))

    def offline(page):
        page.headers.update(DOCS_POLICY)
        return page

    redoc_bundle = (docs_assets() / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO,
                                                                                b"data:,")

    @app.get(f"{DOCS_ASSETS}/redoc.standalone.js", include_in_schema=False)
    def redoc_script():  # before the mount below, so this route answers for the file
        return Response(redoc_bundle, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=3600"})

    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_assets()), name="docs-assets")
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
