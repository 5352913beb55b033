"""Request ids: every request has one, returned as ``X-Request-Id`` on every response and
carried into its access log line and audit record.

A client's own ``X-Request-Id`` is kept when it is short and plain (letters, digits and
``- _ . : + / = @``, at most :data:`MAX_LENGTH` characters), so a caller's or a proxy's id
follows the request through; anything else is replaced by a fresh one, since the id ends up
in log lines, JSON and headers unescaped. A fresh id is 32 hex digits: 16 drawn at random
when the process starts, then a count of the process's requests, so ids are unique across
processes and restarts without a random draw (a system call) per request.

The app's outermost middleware (:func:`gateway.observability.metrics.observer`) assigns the
id as the request comes in and puts it on the response; a handler that prepares its own
response (a streamed download) sets the header itself.
"""

from __future__ import annotations

import itertools
import os
import re

from aiohttp import web

__all__ = ["HEADER", "MAX_LENGTH", "assign", "request_id_of"]

HEADER = "X-Request-Id"
MAX_LENGTH = 128
_PLAIN = re.compile(rf"[A-Za-z0-9._:+/=@-]{{1,{MAX_LENGTH}}}", re.ASCII)
_ID = web.RequestKey("mlgate_request_id", str)
_PREFIX = os.urandom(8).hex()
_COUNT = itertools.count()


def assign(request: web.BaseRequest) -> str:
    """Give the request its id: the client's when plain, else a new one."""
    sent = request.headers.get(HEADER)
    rid = request[_ID] = (sent if sent is not None and _PLAIN.fullmatch(sent)
                          else f"{_PREFIX}{next(_COUNT):016x}")
    return rid


def request_id_of(request: web.BaseRequest) -> str:
    """The request's id; assigned here if it has none yet (one aiohttp refused before it
    reached the app)."""
    try:
        return request[_ID]
    except KeyError:
        return assign(request)
