"""The MLflow web UI: ``/`` serves the bundle's index.html and ``/static-files/...`` its
files, unchanged, with stock's headers (:mod:`gateway.ui_bundle` finds the folder once, at
start). The bundle's URLs are relative and it routes with the URL's fragment, so the server
only ever sees these two paths, under ``--static-prefix`` when there is one.

The files are public, as on stock with basic auth (the page itself holds no data); ``/``
needs a signed-in caller, so that with ``--auth`` the browser's login prompt comes first.
"""

from __future__ import annotations

import html
from pathlib import Path, PurePosixPath

from aiohttp import web

from auth.access import Access, Action, ResourceKind
from gateway.keys import SETTINGS, UI_BUNDLE
from gateway.routing import Route
from gateway.ui_bundle import MLFLOW_UI_VERSION, data_dir

__all__ = ["AT_PREFIX", "ROUTES"]

_PUBLIC = Access(ResourceKind.PUBLIC, Action.READ)
# Any authenticated caller (reading the default workspace is refused to nobody signed in);
# with auth off, anyone.
_SIGNED_IN = Access(ResourceKind.WORKSPACE, Action.READ)

# Stock's headers on every Flask response (mlflow/server/security.py).
_SECURITY = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN"}
_INDEX = {**_SECURITY, "Cache-Control": "no-cache",
          "Content-Type": "text/html; charset=utf-8"}
_FILES = {**_SECURITY, "Cache-Control": "public, max-age=2419200"}  # 28 days, as stock
# Stock's types (Python's mimetypes plus Werkzeug's charset), whatever this machine's
# /etc/mime.types says; other suffixes are guessed by aiohttp.
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
    ".json": "application/json",
    ".ico": "image/vnd.microsoft.icon",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".wasm": "application/wasm",
}


def _bundle_file(root: Path, path: str) -> Path | None:
    """``path`` (the URL's, decoded) as a regular file inside ``root``, or None: no empty,
    ``.`` or ``..`` segment, no NUL or backslash, and nothing that resolves (through a
    symbolic link) outside ``root``."""
    if not path or "\x00" in path or "\\" in path:
        return None
    rel = PurePosixPath(path)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        return None
    try:
        target = root.joinpath(*rel.parts).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
    except (OSError, RuntimeError, ValueError):  # a link loop, a name too long
        return None
    return target


async def index(request: web.Request) -> web.StreamResponse:
    root = request.app[UI_BUNDLE]
    if root is None:
        return web.Response(text=_missing_page(request), headers=_INDEX)
    return web.FileResponse(root / "index.html", headers=_INDEX)


async def static_file(request: web.Request) -> web.StreamResponse:
    root = request.app[UI_BUNDLE]
    target = None if root is None else _bundle_file(root, request.match_info["path"])
    if target is None:
        raise web.HTTPNotFound()
    headers = dict(_FILES)
    if (ctype := _TYPES.get(target.suffix.lower())) is not None:
        headers["Content-Type"] = ctype
    return web.FileResponse(target, headers=headers)


async def to_slash(request: web.Request) -> web.StreamResponse:
    """``/prefix`` → ``/prefix/``: the page's relative URLs only resolve under the slash."""
    query = request.rel_url.raw_query_string
    raise web.HTTPPermanentRedirect(request.rel_url.raw_path + "/" + (f"?{query}" if query
                                                                      else ""))


def _missing_page(request: web.Request) -> str:
    static_dir = request.app[SETTINGS].static_dir
    where = (f"<p><code>--static-dir {html.escape(static_dir)}</code> holds no "
             "<code>index.html</code>.</p>" if static_dir else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mlgate: the MLflow UI is not installed</title></head>
<body>
<h1>The MLflow web UI is not installed</h1>
{where}<p>mlgate is running and its API answers; only the UI's files are missing. Get them
(the compiled UI of MLflow {MLFLOW_UI_VERSION}, about 12 MB, without mlflow's
dependencies) and restart the server:</p>
<pre>mlgate ui install</pre>
<p>mlgate also finds them in an installed <code>mlflow=={MLFLOW_UI_VERSION}</code> package, or
in the folder given by <code>--static-dir</code> / <code>MLGATE_STATIC_DIR</code>.
<code>mlgate ui install</code> puts them in
<code>{html.escape(str(data_dir()))}</code>.</p>
</body></html>
"""


ROUTES = [
    Route(method, path, handler, access, prefixes=("",), body=False)
    for method in ("GET", "HEAD")  # HEAD as stock's Flask: load balancers, revalidation
    for path, handler, access in (("/", index, _SIGNED_IN),
                                  ("/static-files/{path:.*}", static_file, _PUBLIC))
]
# The prefix itself, installed under --static-prefix only.
AT_PREFIX = Route("GET", "", to_slash, _PUBLIC, prefixes=("",), body=False)
