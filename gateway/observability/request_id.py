"""Request ids: every request has one, returned as ``X-Request-Id`` on every response and
carried into its access log line and audit record.

A client's own ``X-Request-Id`` is kept when it is short and plain (letters, digits and
``- _ . : + / = @``, at most :data:`MAX_LENGTH` characters), so a caller's or a proxy's id
follows the request through; anything else is replaced by a fresh one, since the id ends up
in log lines, JSON and headers unescaped.
"""

from __future__ import annotations

import os
import re

from aiohttp import web

__all__ = ["HEADER", "MAX_LENGTH", "request_id_of", "stamp"]

HEADER = "X-Request-Id"
MAX_LENGTH = 128
_PLAIN = re.compile(rf"[A-Za-z0-9._:+/=@-]{{1,{MAX_LENGTH}}}", re.ASCII)
_ID = web.RequestKey("mlgate_request_id", str)


def request_id_of(request: web.BaseRequest) -> str:
    """The request's id: the client's when plain, else a new random one (32 hex digits),
    decided on first use and kept."""
    rid = request.get(_ID)
    if rid is None:
        sent = request.headers.get(HEADER)
        rid = sent if sent is not None and _PLAIN.fullmatch(sent) else os.urandom(16).hex()
        request[_ID] = rid
    return rid


async def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: return the id with every response, errors and streamed
    downloads included (their headers go out when the handler prepares them)."""
    response.headers[HEADER] = request_id_of(request)
