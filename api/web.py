"""The department's page at `/` and the NOC view at `/noc`: static HTML and JavaScript that
read only the public API, with the chart library (uPlot, MIT) vendored under `web/vendor/`
so they work with no internet.

The page holds no data of its own and no secret: it asks for a key (kept in the tab's
sessionStorage, or given in the URL fragment, which browsers never send to a server).

The files are read and gzip-compressed once per process and sent compressed to a browser that
accepts it (a third of their size or less, for a department reaching the server over a slow
link), from the event loop: no worker thread for bytes already in memory.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, Request
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


@cache
def _gzipped(name: str) -> bytes:
    # mtime=0: the same bytes every time (no date inside), so caches and tests see one body.
    return gzip.compress(_read(name), compresslevel=9, mtime=0)


def _accepts_gzip(request: Request) -> bool:
    """Accept-Encoding names gzip with a weight above 0 (RFC 9110 12.5.3)."""
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, *params = part.split(";")
        if coding.strip().lower() != "gzip":
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def _serve(request: Request, name: str) -> Response:
    if name not in _FILES:
        raise HTTPException(404, "not found")
    headers = {
        "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
    }
    body = _read(name)
    if _accepts_gzip(request):
        body = _gzipped(name)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=_FILES[name] + "; charset=utf-8", headers=headers)


@router.get("/")
async def index(request: Request) -> Response:
    return _serve(request, "index.html")


@router.get("/noc")
async def noc(request: Request) -> Response:
    return _serve(request, "noc.html")


@router.get("/ui/{name}")
async def asset(request: Request, name: str) -> Response:
    return _serve(request, name)


@router.get("/ui/vendor/{name}")
async def vendor_asset(request: Request, name: str) -> Response:
    # Only the names listed in _FILES: no path from the request reaches the file system.
    return _serve(request, "vendor/" + name)
