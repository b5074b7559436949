"""The page the server serves at `/`: plain HTML, CSS and JavaScript shipped in the package
(`static/`), no build step, nothing from another origin.

The files themselves hold no data, so they are served without the token or the session
cookie (the Host check still applies); everything the page shows comes from the API, which
needs the cookie that the one-time login link sets. Only the files named in `ASSETS` are
served, by name, never by a path the client sent. Every answer carries a Content-Security-
Policy that lets the page load, connect to and embed its own origin only, and run no inline
script or style.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.exceptions import HTTPException

INDEX = "index.html"
ASSETS: dict[str, str] = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The paths the page's files are served at (open without a token; see security.Guard).
PATHS = ("/", *(f"/static/{name}" for name in ASSETS))


@functools.cache
def shipped(name: str) -> bytes:
    """One of the page's files, as the package ships it."""
    return resources.files("fluxmusic_cli.server").joinpath("static", name).read_bytes()


def add_page(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(shipped(INDEX), media_type="text/html; charset=utf-8", headers=HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        kind = ASSETS.get(name)
        if kind is None:
            raise HTTPException(404)
        return Response(shipped(name), media_type=kind, headers=HEADERS)
