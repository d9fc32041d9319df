"""The department's page at `/` and the NOC view at `/noc`: static HTML and JavaScript that
read only the public API, with the chart library (uPlot, MIT) vendored under `web/vendor/`
so they work with no internet.

The page holds no data of its own and no secret: it asks for a key (kept in the tab's
sessionStorage, or given in the URL fragment, which browsers never send to a server).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)
_FILES = {
    "index.html": "text/html",
    "noc.html": "text/html",
    "app.js": "text/javascript",
    "noc.js": "text/javascript",
    "app.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
}
# The page loads only its own files and talks only to this origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def _read(name: str) -> bytes:
    path = resources.files("api") / "web"
    for part in name.split("/"):
        path = path / part
    return path.read_bytes()


def _serve(name: str) -> Response:
    if name not in _FILES:
        raise HTTPException(404, "not found")
    return Response(
        _read(name),
        media_type=_FILES[name] + "; charset=utf-8",
        headers={
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/")
def index() -> Response:
    return _serve("index.html")


@router.get("/noc")
def noc() -> Response:
    return _serve("noc.html")


@router.get("/ui/{name}")
def asset(name: str) -> Response:
    return _serve(name)


@router.get("/ui/vendor/{name}")
def vendor_asset(name: str) -> Response:
    # Only the names listed in _FILES: no path from the request reaches the file system.
    return _serve("vendor/" + name)
