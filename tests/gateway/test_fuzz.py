"""The project's own fuzz test (issue 21 item 5): every route of the route table, hostile
values, through a real socket to ``python -m gateway serve`` (the CLI's serving stack), on
SQLite and PostgreSQL, with authentication on and off.

An example is an :class:`Attack` on one route of ``gateway.routes.all_routes()`` under one
of its prefixes. Every choice in it is an index into a catalogue below, 0 being what a
client would send, so Hypothesis shrinks a failure towards the one hostile thing that
matters. The route's message fields take plausible values (the ids of a seeded experiment,
run, logged model, registered model, user, token, role) or hostile ones: integers at and
beyond 64 bits and a 400-digit literal, NaN and Infinity as literals and as strings, 5,000
levels of brackets, invalid UTF-8, NUL, CR/LF, traversal in every encoding, absolute paths
and ``file://`` URIs, 1 MB strings, a list where a string goes, an object where an int
goes, filters and page tokens made to break their parsers. They are spelled snake_case,
camelCase or both, sent in the query, the body, both or neither, with keys repeated. The
request may use another method, label its body with another content type or none, compress
it or claim to (gzip, deflate, br, zstd, gzip bombs of 8 and 70 MB), send it chunked, or
carry garbage credentials, workspace names or Ranges. Requests go out byte for byte on
asyncio streams, so a path, a query or a header can hold what no client library sends.

After each example:

1. No answer is a 5xx, except the one stock gives too and its client relies on: 501
   ``NOT_IMPLEMENTED`` with the exact "not supported" message of the multipart and
   presigned routes, which a local destination cannot serve (reference §3b).
2. Every error under the API prefixes is MLflow JSON, ``{"error_code": str, "message":
   str}`` labelled application/json (a HEAD answer has the label and no body). mlgate's
   401 is such JSON, with ``WWW-Authenticate`` (stock's is text/html). Two shapes are
   stock's and copied on purpose: ``{"detail": str}`` for a 400 of the artifact upload and
   download route (its FastAPI route), and a bodiless 416 for a Range past the end of a
   file. A request that is not valid HTTP/1.1 (a byte outside the URI characters in its
   target, a control character in a header, a line beyond the parser's 8 KB, an unknown
   method, Content-Length together with chunked) may instead get aiohttp's own plain 400,
   which its HTTP parser sends before any route or middleware runs (an ``HTTP/1.0 400``);
   a valid request never does (a body not in its Content-Encoding is the app's 400).
3. ``GET /health`` answers 200, after every example and at the end.
4. Nothing is written outside the artifact destination: the server's working directory,
   which holds the destination, holds nothing else but the database, the log and a canary
   file beside them; the canary is unchanged and no answer carries its secret content; no
   file named with :data:`MARK` (the last segment of the hostile paths) is in a directory
   above the working directory or in /tmp.
5. The server logged no error (but the HTTP parser's for a request it refused).

Explicit examples come first: one per route, and one per item of each catalogue on a route
that reads it (:func:`_sweep`), about 420 in all; then Hypothesis adds 500 with a fixed
seed. About 15 s per combination.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gzip
import json
import math
import os
import re
import urllib.parse
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from access_world import (
    ADMIN,
    ADMIN_PASSWORD,
    API2,
    API3,
    MLGATE,
    PASSWORD,
    Api,
    Holdings,
    holdings,
)
from aiohttp.test_utils import TestClient
from conftest import MlgateFactory, ServerProcess
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.errors import API_PREFIXES
from gateway.parsing import Field
from gateway.routes import all_routes
from gateway.routes.artifacts import MPD_UNSUPPORTED, MPU_UNSUPPORTED
from gateway.routing import Route

ROUTES = all_routes()
ENTRIES = tuple((route, prefix) for route in ROUTES for prefix in route.prefixes)
SLOTS = max(len(route.message.fields) for route in ROUTES)  # field choices per attack
_PATH_VARIABLE = re.compile(r"\{(\w+)(?::[^}]*)?\}")
PATH_SLOTS = max(len(_PATH_VARIABLE.findall(route.path)) for route in ROUTES)

MARK = "fzcanary"  # the last segment of every hostile path: what must not appear outside
CANARY = f"{MARK}-keep.txt"  # beside the destination; never read, changed or deleted
LONG = "x" * 1_000_000
DESTINATION = "mlartifacts"  # conftest.mlgate_command's destination, in the workdir
# What the server itself writes in its working directory besides the destination: its log,
# and SQLite's database and audit database (mlgate.db -> mlgate-audit.db) with their
# -wal, -shm or -journal.
SERVER_FILES = frozenset({"mlgate.log", CANARY} | {
    db + suffix for db in ("mlgate.db", "mlgate-audit.db")
    for suffix in ("", "-wal", "-shm", "-journal")})


class Raw(bytes):
    """JSON text sent as it is: what no encoder writes (NaN, 1e400, unclosed brackets,
    invalid UTF-8)."""


# -- the catalogues -------------------------------------------------------------------------

TRAVERSALS = (
    "..", f"../../../../{MARK}", f"%2e%2e/%2e%2e/{MARK}", f"%252e%252e/%252e%252e/{MARK}",
    f"..%2f..%2f{MARK}", f"..\\..\\{MARK}", f"/tmp/{MARK}", f"file:///tmp/{MARK}",
    f"<workdir>/{MARK}", f"file://<workdir>/{MARK}", f"<workdir>/{CANARY}", f"../{CANARY}",
    f"C:\\{MARK}", f"\\\\host\\share\\{MARK}", f"mlflow-artifacts:/../../{MARK}",
    f"<runroot>/../../../../{MARK}", f"a/./../../{MARK}", f"~/{MARK}", f"%2F..%2F{MARK}",
    f"..;/{MARK}", f".%2e/{MARK}", f"..%5c{MARK}", f"%c0%ae%c0%ae/{MARK}",
    f"s3://bucket/{MARK}", f"http://127.0.0.1:1/api/2.0/mlflow-artifacts/artifacts/../{MARK}",
)

# Hostile values of a message field (index v - 1 for choice v; 0 is the plausible value).
VALUES: tuple[Any, ...] = (
    2**63, -(2**63) - 1, 2**63 - 1, -(2**63), 2**64, -(2**64), 10**400, -1, 0,
    math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324,
    Raw(b"1e400"), Raw(b"-1e400"), Raw(b"NaN"), Raw(b"-Infinity"), Raw(b"1" * 5000),
    Raw(b"01"), Raw(b"+1"), Raw(b".5"), Raw(b"tru"),
    "NaN", "Infinity", "-Infinity", "inf", str(2**63), str(-(2**63) - 1), str(10**400),
    "1e400", " 7 ", "0x10", "\u0663", "", " ", "\x00", f"a\x00{MARK}", "\r\n",
    "a\r\nX-Injected: 1", "\udc80", "\U0001f600" * 3, "\u202e\ufeff", "'; DROP TABLE runs; --",
    "%", "%00", "%ff%fe", "null", "a" * 300, "\u00e9" * 5000, LONG,
    *TRAVERSALS,
    Raw(b'"\xff\xfe"'), Raw(b'"\\ud800"'), Raw(b'"\xc0\xae\xc0\xae"'), Raw(b'"a\nb"'),
    Raw(b"[" * 5000), Raw(b"[" * 5000 + b"]" * 5000), Raw(b'{"a":' * 3000 + b"1" + b"}" * 3000),
    Raw(b"[" * 98 + b"]" * 98), Raw(b"[" * 101 + b"]" * 101),
    [], [1, "a", None], [[]], ["<run>", "<run>"], {}, {"a": {"b": [1]}}, {"run_id": "<run>"},
    True, False, 1.5, [LONG], {"key": Raw(b"NaN")},
)

# Filters and orderings for the search routes' own parsers.
FILTERS = (
    f"attributes.start_time > {2**63}", "metrics.m > 1e400", "metrics.m = NaN",
    "params.p = 'x", "name LIKE '%'", "tags.`a\x00` = 'b'", "(" * 1000, "a" * 100_000,
    "run_id IN ()", "run_id IN (" + ",".join(["'x'"] * 5000) + ")",
    "name = 'a' AND " * 2000 + "name = 'b'", f"creation_time > {-(2**63) - 1}",
    f"version_number > {10**400}", "name ILIKE '%\\'", "`", "tags.\"k\" = '\udc80'",
    "start_time DESC, " * 1000 + "name", "metrics.`m` DESC NULLS LAST",
)


class B64(str):
    """A page token: base64 of this JSON text (placeholders filled in first)."""


# The JSON inside page tokens: what the stores' decoders must refuse, and one that only
# differs from a real logged-models token in its offset.
PAGE_TOKENS = (
    '{"offset": Infinity}', '{"offset": NaN}', '{"offset": 1e400}', '{"offset": -1}',
    f'{{"offset": {2**63}}}', f'{{"offset": "{"9" * 5000}"}}', '{"offset": [1]}',
    '{"offset": {"a": 1}}', '{"offset": true}', '{"offset": 1.5}', '{"offset": "1e3"}',
    "[]", '"x"', "null", "[" * 5000, "\udc80",
    ('{"experiment_ids": ["<exp>"], "filter_string": null, "order_by": null, '
     '"offset": Infinity}'),
)

# Values of a URL path variable (0: plausible).
PATH_VALUES = (
    *TRAVERSALS, "", "/", "//", "a/", "d/" * 300 + MARK, "a" * 300, f"<runroot>/{'a' * 300}",
    "%00", f"a%00{MARK}", "%0d%0a", "%ff%fe", "\xff", ".", "./", "...", "\u00e9", LONG,
    "<runroot>/", "<file>/x", "<runroot>", " ", f"?x={MARK}", f"#{MARK}", "\x00",
    f"<runroot>/.{MARK}.mlgate-tmp-0", "%", "%zz",
)
PATH_ENCODINGS = ("quote", "raw", "double")

METHODS = ("", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE",
           "PROPFIND", "FOO", "get", "QUERY", "M-SEARCH", "G\xffT")
# What llhttp knows and a client may send; anything else may be refused by the parser.
STANDARD_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                              "TRACE", "PROPFIND"})
PLACEMENTS = ("natural", "body", "query", "both", "none")
SPELLINGS = ("snake", "camel", "both", "snake body, camel query")

# Keys no route declares, or declares twice under its aliases.
JUNK: tuple[dict[str, Any], ...] = (
    {}, {"": "x"}, {"\x00": 1}, {"__proto__": {"a": 1}}, {"runId": "f" * 32},
    {"run_uuid": "e" * 32}, {"a" * 10_000: 1}, {"\u00e9": Raw(b'"\xff"')},
    {"experimentId": "999"}, {"modelId": "m-" + "0" * 32},
)

NATURAL = object()  # the label the route's body would have
CONTENT_TYPES: tuple[object, ...] = (
    NATURAL, "application/json", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz", None, "", "application/json; charset=utf-16",
    "APPLICATION/JSON", "application/json;", "application/jsonx", "application/octet-stream",
    "*/*", "application/json\x00", "text/html; charset=\xff",
)

# (Content-Encoding, what the body really is)
ENCODINGS: tuple[tuple[str, str] | None, ...] = (
    None, ("gzip", "gzip"), ("gzip", "plain"), ("deflate", "zlib"), ("deflate", "raw deflate"),
    ("deflate", "plain"), ("br", "plain"), ("zstd", "plain"), ("identity", "plain"),
    ("x-gzip", "gzip"), ("gzip, gzip", "gzip twice"), ("gzip", "truncated gzip"),
    ("GZIP", "gzip"), ("bogus", "plain"), ("gzip", "8 MB bomb"), ("gzip", "70 MB bomb"),
)

CREDENTIALS = (
    "admin", "token", "user", "none", "Basic", "Basic !!!", "Basic no-colon", "Basic \xff\xfe",
    "Basic root:wrong", "Basic root:long", "Bearer ", "Bearer unknown", "Bearer mlg_zz",
    "Bearer long", "Digest username=x", "basic admin", "Basic  admin", "Basic admin\x00",
    "Basic :", "Basic huge", "Basic raw", "Bearer raw",
)
WORKSPACES = (None, "default", "../..", "\xff", "a" * 5000, "", "DEFAULT", "no-such-team",
              "team\x00", "<rm>", "%2e%2e")
RANGES = (None, "bytes=0-0", "bytes=-1", "bytes=99999999999999999999999999-", "bytes=5-1",
          "bytes=0-1,2-3", "bytes=", "items=0-1", "bytes=-0", "bytes=" + "9" * 5000 + "-",
          f"bytes={2**64}-{2**64 + 1}")


def _natural_body(fields: bytes, form: bytes) -> bytes:
    return fields


# Whole bodies in place of the route's (0: the fields as a JSON object).
BODIES: tuple[Callable[[bytes, bytes], bytes], ...] = (
    _natural_body,
    lambda j, f: b"",
    lambda j, f: b"   \r\n\t",
    lambda j, f: b"null",
    lambda j, f: b"[1,2]",
    lambda j, f: b'"just a string"',
    lambda j, f: json.dumps(j.decode("utf-8", "replace")).encode(),  # double-encoded
    lambda j, f: b"\xef\xbb\xbf" + j,
    lambda j, f: j + b"}}}",
    lambda j, f: j[: len(j) // 2],
    lambda j, f: b"{" * 5000,
    lambda j, f: b"[" * 5000 + b"]" * 5000,
    lambda j, f: b'{"a":' * 3000 + b"1" + b"}" * 3000,
    lambda j, f: b"\xff\xfe\xfd",
    lambda j, f: b'{"name": "\xff", "run_id": "\xed\xa0\x80", "key": "\x00"}',
    lambda j, f: f,
    lambda j, f: b"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--zz--\r\n",
    lambda j, f: b"x" * 1_000_000,
    lambda j, f: b" " * 1_000_000 + j,
    lambda j, f: b"\x00" * 1000,
    lambda j, f: b"NaN",
    lambda j, f: b"1e400",
    lambda j, f: str(10**400).encode(),
    lambda j, f: b'{"a": NaN, "b": Infinity, "c": -Infinity}',
    lambda j, f: j + j,
    lambda j, f: b'{"' + b"a" * 1_000_000 + b'": 1}',
)

# Plausible values by field name; other fields get one by kind (see _plausible).
PLAUSIBLE: dict[str, Any] = {
    "run_id": "<run>", "run_uuid": "<run>", "source_run_id": "<run>", "experiment_id": "<exp>",
    "experiment_ids": ["<exp>"], "experiment_name": "<expname>", "model_id": "<model>",
    "name": "<rm>", "new_name": "fz-renamed", "version": "1", "alias": "champion",
    "username": "<user>", "password": PASSWORD + "-new", "current_password": PASSWORD,
    "key": "k", "metric_key": "loss", "path": "<runroot>", "artifact_directory_path": "",
    "resource_type": "experiment", "resource_id": "<exp>", "permission": "READ",
    "workspace": "default", "role_id": "<role>", "role_permission_id": "1",
    "resource_pattern": "*", "role": "member", "stage": "Staging", "stages": ["None"],
    "source": "runs:/<run>/model", "upload_id": "u1", "part_number": "1", "num_parts": 1,
    "order_by": ["start_time DESC"], "filter": "", "page_token": None, "max_results": 10,
    "artifact_location": None, "timestamp": 1, "step": 0, "view_type": "ALL",
    "run_view_type": "ALL", "token_id": "<token>", "tag_key": "k",
}


@dataclass(frozen=True)
class Attack:
    """One request, as indexes into the catalogues (0: what a client would send)."""

    entry: int  # into ENTRIES
    method: int = 0  # METHODS; 0: the route's own
    fields: tuple[tuple[int, int], ...] = ((0, 0),) * SLOTS  # (VALUES + 1, leaf) per field
    spelling: int = 0
    placement: int = 0
    duplicate: bool = False  # every query key twice, every body key twice
    junk: int = 0
    body: int = 0
    content_type: int = 0
    encoding: int = 0
    chunked: int = 0  # 1: chunked, 2: chunked and a Content-Length
    path: tuple[tuple[int, int], ...] = ((0, 0),) * PATH_SLOTS  # (PATH_VALUES + 1, encoding)
    query_raw: bool = False  # query keys and values unencoded
    credentials: int = 0
    workspace: int = 0
    range: int = 0


def _hostile(n: int, zeros: int = 1) -> st.SearchStrategy[int]:
    """An index below ``n``: 0 (the ordinary choice) in ``zeros`` of ``zeros + 1`` draws,
    and each other one as often as the others (it shrinks towards 0)."""
    return st.sampled_from([0] * (zeros * (n - 1)) + list(range(1, n)))


def attacks() -> st.SearchStrategy[Attack]:
    field_choice = st.tuples(_hostile(len(VALUES) + 1, 2), st.integers(0, 3))
    path_choice = st.tuples(_hostile(len(PATH_VALUES) + 1), _hostile(len(PATH_ENCODINGS), 3))
    return st.builds(
        Attack,
        entry=st.integers(0, len(ENTRIES) - 1),
        method=_hostile(len(METHODS), 5),
        fields=st.tuples(*[field_choice] * SLOTS),
        spelling=_hostile(len(SPELLINGS), 3),
        placement=_hostile(len(PLACEMENTS), 3),
        duplicate=st.sampled_from((False, False, False, True)),
        junk=_hostile(len(JUNK), 3),
        body=_hostile(len(BODIES), 4),
        content_type=_hostile(len(CONTENT_TYPES), 4),
        encoding=_hostile(len(ENCODINGS), 4),
        chunked=_hostile(3, 8),
        path=st.tuples(*[path_choice] * PATH_SLOTS),
        query_raw=st.sampled_from((False, False, False, False, True)),
        credentials=_hostile(len(CREDENTIALS), 2),
        workspace=_hostile(len(WORKSPACES), 2),
        range=_hostile(len(RANGES), 3),
    )


def _explicit(r: int) -> Attack:
    """The example that drives route ``r`` for sure: its own method and placement, half its
    fields and path variables hostile, the other knobs turned in rotation."""
    route = ROUTES[r]
    entry = ENTRIES.index((route, route.prefixes[r % len(route.prefixes)]))
    return Attack(
        entry=entry,
        fields=tuple((0 if (r + j) % 2 else 1 + (r * 7 + j * 5) % len(VALUES), j % 3)
                     for j in range(SLOTS)),
        path=tuple((0 if (r + k) % 2 else 1 + (r * 3 + k) % len(PATH_VALUES), r % 3)
                   for k in range(PATH_SLOTS)),
        spelling=r % len(SPELLINGS),
        body=r % len(BODIES) if r % 3 == 0 else 0,
        encoding=r % len(ENCODINGS) if r % 5 == 0 else 0,
        range=r % len(RANGES) if r % 2 else 0,
        workspace=r % len(WORKSPACES) if r % 4 == 1 else 0,
        duplicate=r % 4 == 2,
    )


def _entries(keep: Callable[[Route], bool]) -> list[int]:
    return [i for i, (route, _) in enumerate(ENTRIES) if keep(route)]


def _sweep() -> list[Attack]:
    """One example for each item of each catalogue, on the routes that read it in turn,
    the rest of the request as a client sends it: every hostile value is tried at least
    once, whatever the random examples draw."""
    out: list[Attack] = []

    def with_field(entry: int, name: str, value: int, leaf: int) -> Attack:
        fields = [(0, 0)] * SLOTS
        fields[list(ENTRIES[entry][0].message.fields).index(name)] = (value, leaf)
        return Attack(entry, fields=tuple(fields))

    readers = _entries(lambda r: bool(r.message.fields))
    for v in range(len(VALUES)):
        entry = readers[v * 7 % len(readers)]
        names = list(ENTRIES[entry][0].message.fields)
        out.append(with_field(entry, names[v % len(names)], v + 1, 0))
    for name, catalogue in (("page_token", PAGE_TOKENS), ("filter", FILTERS)):
        readers = [i for i, (route, _) in enumerate(ENTRIES) if name in route.message.fields]
        out += [with_field(readers[i % len(readers)], name, i or len(catalogue), 1)
                for i in range(len(catalogue))]
    artifact_paths = _entries(lambda r: "{path" in r.path or "{directory" in r.path)
    out += [Attack(artifact_paths[p % len(artifact_paths)],
                   path=((p + 1, p % len(PATH_ENCODINGS)),) + ((0, 0),) * (PATH_SLOTS - 1))
            for p in range(len(PATH_VALUES))]
    bodies = _entries(lambda r: r.method != "GET")
    out += [Attack(bodies[b * 5 % len(bodies)], body=b) for b in range(1, len(BODIES))]
    out += [Attack(bodies[e * 3 % len(bodies)], encoding=e) for e in range(1, len(ENCODINGS))]
    out += [Attack(bodies[c * 7 % len(bodies)], content_type=c)
            for c in range(1, len(CONTENT_TYPES))]
    out += [Attack(bodies[k * 11 % len(bodies)], chunked=k) for k in (1, 2)]
    out += [Attack(m * 13 % len(ENTRIES), method=m) for m in range(1, len(METHODS))]
    out += [Attack(c * 17 % len(ENTRIES), credentials=c) for c in range(1, len(CREDENTIALS))]
    out += [Attack(w * 19 % len(ENTRIES), workspace=w) for w in range(1, len(WORKSPACES))]
    downloads = _entries(lambda r: r.method == "GET" and r.path == "/artifacts/{path:.*}")
    out += [Attack(downloads[r % len(downloads)], range=r) for r in range(1, len(RANGES))]
    readers = _entries(lambda r: bool(r.message.fields))
    out += [Attack(readers[j * 5 % len(readers)], junk=j) for j in range(1, len(JUNK))]
    out += [Attack(readers[s * 9 % len(readers)], spelling=s, duplicate=s == 1,
                   query_raw=s == 2) for s in range(1, len(SPELLINGS))]
    out += [Attack(readers[p * 23 % len(readers)], placement=p)
            for p in range(1, len(PLACEMENTS))]
    return out


# -- turning an attack into bytes -------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _plausible(name: str, spec: Field) -> Any:
    if name in PLAUSIBLE:
        value = PLAUSIBLE[name]
        if spec.kind == "message" and spec.repeated and value and isinstance(value[0], str):
            value = None  # logged-models' order_by is a message; fall through to the kind
        else:
            return value
    if spec.kind == "message":
        assert spec.message is not None
        item = {n: _plausible(n, s) for n, s in spec.message.fields.items()}
        return [item] if spec.repeated else item
    one = {"string": "fz", "int64": 1, "double": 1.5, "bool": True, "bytes": "Zno=",
           "enum": next(iter(spec.enum or {"": 0}))}[spec.kind]
    return [one] if spec.repeated else one


def _field_value(name: str, spec: Field, choice: tuple[int, int]) -> Any:
    value, leaf = choice
    if value == 0:
        return _plausible(name, spec)
    hostile = VALUES[value - 1]
    if spec.kind == "message" and leaf and spec.message and spec.message.fields:
        # The structure stays; one field inside its first item is hostile.
        base = _plausible(name, spec)
        item = base[0] if spec.repeated else base
        item[list(spec.message.fields)[(leaf - 1) % len(spec.message.fields)]] = hostile
        return base
    if name in ("filter", "order_by") and leaf:
        return [FILTERS[value % len(FILTERS)]] if name == "order_by" else (
            FILTERS[value % len(FILTERS)])
    if name == "page_token" and leaf:
        return B64(PAGE_TOKENS[value % len(PAGE_TOKENS)])
    return hostile


def _dump(value: Any, fill: Callable[[str], str]) -> bytes:
    """JSON text of ``value``, :class:`Raw` parts as they are, strings filled in (lone
    surrogates go out as the invalid UTF-8 they are)."""
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, B64):
        value = _token(value, fill)
    if isinstance(value, dict):
        return _object(list(value.items()), fill)
    if isinstance(value, list):
        return b"[" + b",".join(_dump(v, fill) for v in value) + b"]"
    if isinstance(value, str):
        value = fill(value)
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _object(pairs: list[tuple[str, Any]], fill: Callable[[str], str]) -> bytes:
    return b"{" + b",".join(_dump(k, fill) + b":" + _dump(v, fill) for k, v in pairs) + b"}"


def _query_text(value: Any, fill: Callable[[str], str]) -> list[bytes]:
    """What a query string carries of ``value``: one item per list element."""
    if isinstance(value, list):
        return [b for item in value for b in _query_text(item, fill)] or [b""]
    if isinstance(value, bool):
        return [b"true" if value else b"false"]
    if isinstance(value, B64):
        return [_token(value, fill).encode()]
    if isinstance(value, str):
        return [fill(value).encode("utf-8", "surrogatepass")]
    return [_dump(value, fill)]


def _token(text: B64, fill: Callable[[str], str]) -> str:
    return base64.b64encode(fill(str(text)).encode("utf-8", "surrogatepass")).decode()


def _encode(text: bytes, mode: str, safe: str = "") -> bytes:
    if mode == "raw":
        return text
    once = urllib.parse.quote(text, safe=safe)
    return (once if mode == "quote" else urllib.parse.quote(once, safe=safe)).encode()


@functools.cache
def _bomb(megabytes: int) -> bytes:
    return gzip.compress(b" " * (megabytes * 1024 * 1024), 9)


def _compressed(body: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(body)
    if how == "gzip twice":
        return gzip.compress(gzip.compress(body))
    if how == "truncated gzip":
        return gzip.compress(body)[:-6]
    if how == "zlib":
        return zlib.compress(body)
    if how == "raw deflate":
        return zlib.compress(body)[2:-4]
    if how == "8 MB bomb":
        return _bomb(8)
    if how == "70 MB bomb":
        return _bomb(70)
    return body


@dataclass
class Request:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    chunked: int
    coding: tuple[str, str] | None = None  # (Content-Encoding, what the body really is)

    def wire(self) -> bytes:
        head = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: 127.0.0.1",
                b"Connection: close"]
        head += [name + b": " + value for name, value in self.headers]
        body = self.body
        if body is not None:
            if self.chunked:
                head.append(b"Transfer-Encoding: chunked")
                parts = [body[:1], body[1:4096], body[4096:]]
                body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
            if self.chunked != 1:
                head.append(b"Content-Length: %d" % len(self.body or b""))
        return b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")

    def invalid_http(self) -> str | None:
        """Why this is not a request HTTP/1.1 allows, or an aiohttp parser limit is
        exceeded (None: it is valid, and the app must answer it)."""
        if self.method.decode("latin-1") not in STANDARD_METHODS:
            return "an unknown method"
        if not _URI.fullmatch(self.target):
            return "a request target with bytes outside the URI characters"
        if len(self.method) + len(self.target) > 8000:
            return "a request line beyond the parser's 8 KB"
        for name, value in self.headers:
            if len(name) + len(value) > 8000:
                return "a header beyond the parser's 8 KB"
            if _CTL.search(value):
                return "a control character in a header"
        if self.chunked == 2:
            return "both Content-Length and chunked"
        return None

    @property
    def path(self) -> str:
        return self.target.split(b"?", 1)[0].decode("latin-1")

    def __str__(self) -> str:
        def cut(data: bytes, n: int = 300) -> str:
            more = f"... ({len(data)} bytes)" if len(data) > n else ""
            return repr(data[:n]) + more

        headers = " ".join(f"{n.decode()}={cut(v, 100)}" for n, v in self.headers)
        body = "no body" if self.body is None else f"body {cut(self.body)}"
        return (f"{self.method.decode('latin-1')} {cut(self.target)} [{headers}] {body}"
                f"{' chunked' if self.chunked else ''}")


_URI = re.compile(rb"(?:[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


# -- reading the answer ---------------------------------------------------------------------


@dataclass
class Reply:
    version: str
    status: int
    headers: CIMultiDict[str]
    body: bytes

    @property
    def refused_by_parser(self) -> bool:
        """aiohttp's HTTP parser answered (before any route or middleware): it answers
        HTTP/1.0 since it read no version."""
        return self.version == "HTTP/1.0" and self.status == 400

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __str__(self) -> str:
        return (f"{self.version} {self.status} {self.headers.get('Content-Type')!r} "
                f"{self.body[:300]!r}")


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    """The chunked body's bytes, and whether its last chunk has come."""
    out: list[bytes] = []
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            return b"".join(out), False
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            return b"".join(out), True
        if len(data) < size + 2:
            return b"".join(out), False
        out.append(data[:size])
        data = data[size + 2:]


def _parse(raw: bytes, head_request: bool, *, closed: bool) -> Reply | None:
    """The answer in ``raw``; None while it is incomplete and the connection open."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        if closed:
            raise ValueError(f"no complete answer: {raw[:300]!r}")
        return None
    status_line, *lines = head.split(b"\r\n")
    version, status, *_ = status_line.decode("latin-1").split(" ", 2)
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers.add(name.strip(), value.strip())
    code = int(status)
    done = True
    if head_request or code in (204, 304):
        body = b""
    elif "chunked" in headers.get("Transfer-Encoding", "").lower():
        if not (closed or rest.endswith(b"0\r\n\r\n")):
            return None
        body, done = _dechunk(rest)
    elif "Content-Length" in headers:
        length = int(headers["Content-Length"])
        body, done = rest[:length], len(rest) >= length
    else:
        body, done = rest, False  # ends when the connection closes
    return Reply(version, code, headers, body) if done or closed else None


async def exchange(host: str, port: int, request: bytes, *, head: bool = False,
                   timeout: float = 60) -> Reply:
    """Send ``request`` as it is and read the answer. The body goes out while the answer is
    read: the server may answer before it has read it all (and then close, which may reset
    the connection, but not before what it sent has been read)."""
    reader, writer = await asyncio.open_connection(host, port)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(request)
            await writer.drain()

    async def receive() -> Reply:
        raw = bytearray()
        expected = -1  # the answer's length, once its head says so
        while True:
            try:
                chunk = await reader.read(1 << 20)
            except ConnectionError:
                chunk = b""
            raw += chunk
            if chunk and expected < 0 and b"\r\n\r\n" in raw:
                head_end = raw.index(b"\r\n\r\n") + 4
                length = re.search(rb"\r\ncontent-length: *(\d+)", raw[:head_end].lower())
                expected = head_end + (int(length[1]) if length and not head else 0)
            if chunk and (expected < 0 or len(raw) < expected):
                continue
            reply = _parse(bytes(raw), head, closed=not chunk)
            if reply is not None:
                return reply

    sender = asyncio.create_task(send())
    try:
        return await asyncio.wait_for(receive(), timeout)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# -- the server and what must hold ---------------------------------------------------------


def _basic(user: str | bytes, password: str | bytes) -> bytes:
    raw = (user.encode() if isinstance(user, str) else user) + b":" + (
        password.encode() if isinstance(password, str) else password)
    return b"Basic " + base64.b64encode(raw)


@dataclass(repr=False)
class Fuzz:
    """The server, the resources the plausible values name, and the checks of one example."""

    server: ServerProcess
    api: Api
    auth: bool
    secret: str = field(default_factory=lambda: f"zsecret{uuid.uuid4().hex}")
    ids: dict[str, str] = field(default_factory=dict)
    token: str = ""
    log_offset: int = 0
    examples: int = 0
    driven: set[int] = field(default_factory=set)
    strays: set[str] = field(default_factory=set)  # files outside, blamed on an example

    def __repr__(self) -> str:
        return f"Fuzz({self.server.url}, auth={self.auth}, workdir={self.workdir})"

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urllib.parse.urlsplit(self.server.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    @property
    def workdir(self) -> Path:
        return self.server.workdir

    def fill(self, text: str) -> str:
        if "<" in text:
            for placeholder, value in self.ids.items():
                text = text.replace(placeholder, value)
        return text

    # -- the world the plausible values name ------------------------------------------

    async def seed(self) -> None:
        (self.workdir / CANARY).write_text(self.secret)
        self.ids = {"<workdir>": str(self.workdir), "<user>": "fz-user", "<role>": "1",
                    "<token>": "0" * 16}
        if self.auth:
            await self.api.add_user("fz-user")
            self.token, self.ids["<token>"] = await self.api.token(ADMIN, name="fz")
            role = await self.api.ok("POST", f"{API3}/roles/create",
                                     body={"name": "fz-role", "workspace": "default"})
            self.ids["<role>"] = str(role["role"]["id"])
        self.use(await holdings(self.api, ADMIN, "default", "fz0"))
        self.log_offset = self.server.log_path.stat().st_size

    def use(self, h: Holdings) -> None:
        self.ids.update({"<run>": h.run_id, "<exp>": h.experiment_id,
                         "<expname>": h.experiment_name, "<model>": h.model_id,
                         "<rm>": h.rm_name, "<runroot>": h.run_root, "<file>": h.known_file})

    async def refresh(self) -> None:
        """After a change: make afresh what the plausible values name and an attack
        deleted, renamed or revoked, so that later examples still reach the stores."""
        ids, api = self.ids, self.api
        checks = [
            await api.call("GET", f"{API2}/runs/get", query={"run_id": ids["<run>"]}),
            await api.call("GET", f"{API2}/experiments/get",
                           query={"experiment_id": ids["<exp>"]}),
            await api.call("GET", f"{API2}/logged-models/{ids['<model>']}"),
            await api.call("GET", f"{API2}/model-versions/get",
                           query={"name": ids["<rm>"], "version": "1"}),
        ]
        active = all(r.ok for r in checks) and all(
            "deleted" not in r.body.decode(errors="replace") for r in checks[:2])
        if not active:
            self.use(await holdings(api, ADMIN, "default", f"fz{self.examples}"))
        if self.auth:
            if not (await api.call("GET", f"{API2}/users/current", "fz-user")).ok:
                await api.call("DELETE", f"{API2}/users/delete", body={"username": "fz-user"})
                await api.add_user("fz-user")
            if not (await api.call("GET", f"{MLGATE}/tokens", {
                    "Authorization": f"Bearer {self.token}"})).ok:
                self.token, self.ids["<token>"] = await api.token(ADMIN, name="fz")

    # -- one attack ----------------------------------------------------------------------

    def render(self, attack: Attack) -> Request:
        route, prefix = ENTRIES[attack.entry]
        method = METHODS[attack.method] or route.method
        spelling = SPELLINGS[attack.spelling]
        fill = self.fill

        variables = _PATH_VARIABLE.findall(route.path)
        values: dict[str, bytes] = {}
        for name, (pick, coding) in zip(variables, attack.path, strict=False):
            if pick:
                value = PATH_VALUES[pick - 1]
            else:
                value = _plausible_path(name, route)
            safe = "/" if name in ("path", "directory") else ""
            values[name] = _encode(fill(value).encode("utf-8", "surrogatepass"),
                                   PATH_ENCODINGS[coding], safe)
        target = prefix.encode() + _PATH_VARIABLE.sub(
            lambda m: values[m.group(1)].decode("latin-1"), route.path).encode("latin-1")

        pairs: list[tuple[str, Any]] = []
        for (name, spec), choice in zip(route.message.fields.items(), attack.fields,
                                        strict=False):
            value = _field_value(name, spec, choice)
            if value is None:
                continue
            camel = _camel(name)
            if spelling in ("camel",) and camel != name:
                pairs.append((camel, value))
            elif spelling == "both" and camel != name:
                pairs += [(name, value), (camel, value)]
            else:
                pairs.append((name, value))
        pairs += list(JUNK[attack.junk].items())
        if attack.duplicate:
            pairs += [(k, "999999" if v != "999999" else "0") for k, v in pairs]

        placement = PLACEMENTS[attack.placement]
        if placement == "natural":
            placement = "query" if method in ("GET", "HEAD") or not route.body else "body"
        query_pairs = pairs if placement in ("query", "both") else []
        if spelling == "snake body, camel query":
            query_pairs = [(_camel(k), v) for k, v in query_pairs]
        if query_pairs:
            mode = "raw" if attack.query_raw else "quote"
            target += b"?" + b"&".join(
                _encode(fill(k).encode("utf-8", "surrogatepass"), mode) + b"="
                + _encode(item, mode)
                for k, v in query_pairs for item in _query_text(v, fill))

        fields_json = _object(pairs if placement in ("body", "both") else [], fill)
        form = urllib.parse.urlencode(
            [(fill(k), item) for k, v in pairs for item in _query_text(v, fill)]).encode()
        body: bytes | None = None
        natural_type = "application/json"
        if not route.body:  # the body is a file's bytes
            natural_type = "application/octet-stream"
            body = BODIES[attack.body](b"fuzz file\n", form) if attack.body else b"fuzz file\n"
        elif placement in ("body", "both") or attack.body:
            body = BODIES[attack.body](fields_json, form)

        headers: list[tuple[bytes, bytes]] = []
        credentials = self._credentials(CREDENTIALS[attack.credentials])
        if credentials is not None:
            headers.append((b"Authorization", credentials))
        workspace = WORKSPACES[attack.workspace]
        if workspace is not None:
            headers.append((b"X-MLFLOW-WORKSPACE", fill(workspace).encode("latin-1", "replace")
                            if workspace != "\xff" else b"\xff"))
        if RANGES[attack.range] is not None:
            headers.append((b"Range", str(RANGES[attack.range]).encode()))
        if body is not None:
            content_type = CONTENT_TYPES[attack.content_type]
            if content_type is NATURAL:
                content_type = natural_type
            if content_type is not None:
                headers.append((b"Content-Type", str(content_type).encode("latin-1")))
            encoding = ENCODINGS[attack.encoding]
            if encoding is not None:
                headers.append((b"Content-Encoding", encoding[0].encode()))
                body = _compressed(body, encoding[1])
        return Request(method.encode("latin-1"), target, headers, body,
                       attack.chunked if body is not None else 0,
                       ENCODINGS[attack.encoding] if body is not None else None)

    def _credentials(self, kind: str) -> bytes | None:
        admin = _basic(ADMIN, ADMIN_PASSWORD)
        return {
            "admin": admin, "token": f"Bearer {self.token}".encode(),
            "user": _basic("fz-user", PASSWORD), "none": None, "Basic": b"Basic",
            "Basic !!!": b"Basic !!!", "Basic no-colon": b"Basic " + base64.b64encode(b"x"),
            "Basic \xff\xfe": _basic(b"\xff\xfe", b"\xff"),
            "Basic root:wrong": _basic(ADMIN, "wrong"),
            "Basic root:long": _basic(ADMIN, "p" * 4000),
            "Bearer ": b"Bearer ", "Bearer unknown": b"Bearer mlg_0000000000000000_" + b"A" * 43,
            "Bearer mlg_zz": b"Bearer mlg_zz", "Bearer long": b"Bearer " + b"a" * 5000,
            "Digest username=x": b"Digest username=x", "basic admin": b"basic" + admin[5:],
            "Basic  admin": b"Basic " + admin[5:], "Basic admin\x00": admin + b"\x00",
            "Basic :": _basic("", ""), "Basic huge": b"Basic " + b"a" * 9000,
            # Not UTF-8, which HTTP allows (obs-text) and aiohttp decodes with surrogates.
            "Basic raw": b"Basic \xff\xfe", "Bearer raw": b"Bearer mlg_\xff",
        }[kind]

    async def check(self, attack: Attack) -> None:
        self.examples += 1
        route, prefix = ENTRIES[attack.entry]
        self.driven.add(ROUTES.index(route))
        request = self.render(attack)
        host, port = self.host_port
        problems: list[str] = []
        reply: Reply | None = None
        try:
            reply = await exchange(host, port, request.wire(), head=request.method == b"HEAD",
                                   timeout=60)
        except (ValueError, TimeoutError, OSError) as exc:
            problems.append(f"no answer: {type(exc).__name__}: {exc}")
        if reply is not None:
            problems += _answer_problems(request, reply, self.secret)
        problems += await self.health()
        problems += self.files()
        log = self.new_log()
        if _logged_errors(log, reply is not None and reply.refused_by_parser
                          and request.invalid_http() is not None):
            problems.append("(5) the server logged an error")
        assert not problems, "\n".join([
            f"{route.method} {prefix}{route.path}: {attack}", f"request: {request}",
            f"answer: {reply}", *problems, "--- server log ---", log[-6000:]])
        if request.method not in (b"GET", b"HEAD"):
            await self.refresh()
            self.log_offset = self.server.log_path.stat().st_size

    async def health(self) -> list[str]:
        host, port = self.host_port
        try:
            reply = await exchange(host, port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Connection: close\r\n\r\n", timeout=30)
        except (ValueError, TimeoutError, OSError) as exc:
            return [f"(3) health did not answer: {type(exc).__name__}: {exc}"]
        if self.server.proc.poll() is not None:
            return [f"(3) the server exited with {self.server.proc.returncode}"]
        return [] if reply.status == 200 else [f"(3) health answered {reply}"]

    def files(self, *, again: bool = False) -> list[str]:
        """(4): only the destination, the database, the log and the canary beside it; no
        file named with MARK above or in /tmp. A stray file is blamed on the first example
        after which it is seen (``again``: on this call too)."""
        strays = [entry.path for entry in os.scandir(self.workdir) if not (
            entry.name == DESTINATION and entry.is_dir(follow_symlinks=False)
            or entry.name in SERVER_FILES and entry.is_file(follow_symlinks=False))]
        for directory in [*self.workdir.parents, Path("/tmp")]:
            with contextlib.suppress(OSError):
                strays += [str(directory / name) for name in os.listdir(directory)
                           if MARK in name]
        problems = [f"(4) written outside the destination: {path}" for path in strays
                    if again or path not in self.strays]
        self.strays.update(strays)
        canary = self.workdir / CANARY
        if not canary.is_file() or canary.read_text() != self.secret:
            problems.append(f"(4) the canary beside the destination was changed: {canary}")
            canary.write_text(self.secret)
        return problems

    def new_log(self) -> str:
        with open(self.server.log_path, "rb") as log:
            log.seek(self.log_offset)
            data = log.read()
        self.log_offset += len(data)
        return data.decode(errors="replace")


def _plausible_path(name: str, route: Route) -> str:
    if name == "path":
        return "<runroot>/up.bin" if route.method == "PUT" else "<file>"
    if name == "directory":
        return "<runroot>"
    if name == "name":
        return "default"
    value = PLAUSIBLE.get(name)
    assert isinstance(value, str), f"{route.path}: no plausible value for {{{name}}}; add one"
    return value


# A log record's first line (gateway/cli.py's format): time, level, logger, [pid], message.
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (ERROR|CRITICAL) |^\d{4}-",
                     re.MULTILINE)


def _logged_errors(log: str, refused: bool) -> list[str]:
    """The error records (with their tracebacks) in ``log``, but the HTTP parser's for a
    request it ``refused``."""
    log = "".join(line for line in log.splitlines(keepends=True)
                  if not line.startswith('{"ts":'))  # audit records, JSON lines of their own
    marks = list(_RECORD.finditer(log))
    ends = [m.start() for m in marks[1:]] + [len(log)] * bool(marks)
    errors = [log[m.start():end] for m, end in zip(marks, ends, strict=True) if m[1]]
    return [r for r in errors if not (refused and " aiohttp.server " in r.split("\n", 1)[0])]


def _answer_problems(request: Request, reply: Reply, secret: str) -> list[str]:
    """Checks (1), (2) and the canary's secret, for one answer."""
    problems = []
    path = request.path
    error = reply.json() if reply.status >= 400 else None
    if secret.encode() in reply.body:
        problems.append("(4) the answer holds the content of the canary beside the "
                        "destination")
    if reply.status >= 500 and not (
            reply.status == 501 and ("/mpu/" in path or "/presigned/" in path)
            and isinstance(error, dict) and error.get("error_code") == "NOT_IMPLEMENTED"
            and error.get("message") in (MPU_UNSUPPORTED, MPD_UNSUPPORTED)):
        problems.append(f"(1) a {reply.status}")
    if reply.refused_by_parser:
        if path.startswith(API_PREFIXES) and request.invalid_http() is None:
            problems.append("(2) a valid request was refused by the HTTP parser, not by the "
                            "app (plain text)")
        return problems
    if reply.status < 400 or not path.startswith(API_PREFIXES):
        return problems
    if reply.status == 401 and "WWW-Authenticate" not in reply.headers:
        problems.append("(2) a 401 without WWW-Authenticate")
    if reply.content_type != "application/json":
        if not (reply.status == 416 and not reply.body
                and reply.headers.get("Content-Range", "").startswith("bytes */")):
            problems.append(f"(2) an error labelled {reply.content_type!r}, not JSON")
        return problems
    if request.method == b"HEAD":
        return problems  # the label only: HEAD has no body
    if isinstance(error, dict) and set(error) == {"detail"} and isinstance(
            error["detail"], str) and reply.status == 400 and "/mlflow-artifacts/artifacts/" in (
            path) and request.method in (b"GET", b"PUT"):
        return problems  # stock's FastAPI shape for its artifact route (reference §3b)
    if not (isinstance(error, dict) and isinstance(error.get("error_code"), str)
            and isinstance(error.get("message"), str)):
        problems.append("(2) an error that is not {\"error_code\": str, \"message\": str}")
    return problems


# -- the test ---------------------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["auth", "open"])
def auth(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def fuzz(mlgate_factory: MlgateFactory, auth: bool) -> AsyncIterator[Fuzz]:
    """``python -m gateway serve`` on a fresh SQLite or PostgreSQL database, the seeded world,
    and at the end the checks that the server is still up and wrote nothing outside."""
    extra = ("--auth", "--admin-username", ADMIN, "--auth-max-failures", "1000000") if auth else ()
    server = mlgate_factory(*extra, env={"MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    async with aiohttp.ClientSession(base_url=server.url) as session:
        # Api drives any aiohttp client whose request() takes a path, as this session's does.
        harness = Fuzz(server, Api(cast(TestClient[Any, Any], session)), auth)
        await harness.seed()
        yield harness
        problems = await harness.health() + harness.files(again=True)
        assert not problems, "\n".join(["after the run:", *problems])
        if harness.examples > len(ROUTES):
            assert harness.driven == set(range(len(ROUTES)))


def _with_every_route_and_value(test: Any) -> Any:
    for attack in [*map(_explicit, range(len(ROUTES))), *_sweep()]:
        test = example(attack=attack)(test)
    return test


@settings(max_examples=500, deadline=None, derandomize=True, database=None, print_blob=False,
          # The server is a fixture on purpose: started once per combination, kept across
          # Hypothesis's examples.
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(attack=attacks())
@_with_every_route_and_value
async def test_hostile_requests_get_clean_answers(fuzz: Fuzz, attack: Attack) -> None:
    await fuzz.check(attack)
