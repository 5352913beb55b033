"""Request parsing as MLflow's protobuf layer does it (reference §0).

A message is declared as a :class:`Message` of :class:`Field` specs. :func:`parse` accepts
snake_case and lowerCamelCase names (both at once is an error), numeric strings for numbers,
``"NaN"``/``"Infinity"`` for doubles, enum names or numbers, ignores unknown fields, and
returns a dict keyed by snake_case names holding only the fields that were sent.
"""

from __future__ import annotations

import asyncio
import base64
import math
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import orjson
from aiohttp import web
from multidict import MultiMapping

from gateway.errors import MlflowError, invalid_parameter

__all__ = [
    "HINT",
    "MAX_JSON_DEPTH",
    "MESSAGE",
    "Field",
    "Message",
    "message_of",
    "missing",
    "parse",
    "read_json_body",
    "read_request",
]

Kind = Literal["string", "int64", "double", "bool", "enum", "message", "bytes"]

HINT = " See the API docs for more information about request parameters."

# What a 64-bit column holds: SQLite raises OverflowError beyond it, PostgreSQL refuses it.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Field:
    kind: Kind = "string"
    repeated: bool = False
    required: bool = False
    message: Message | None = None
    enum: Mapping[str, int] | None = None
    default: Any = None
    # A repeated message field's shortcut: the parsed list when every item is already in
    # the form the full parse would give (see plain_items), else None and the full parse.
    fast: Callable[[Any], list[dict[str, Any]] | None] | None = None


def plain_items(types: Mapping[str, tuple[type, ...]]) -> Callable[[Any], list[dict[str, Any]] | None]:
    """A :attr:`Field.fast` for items that are objects with only the snake_case ``types``
    keys, each of an exact JSON type: ``(str,)`` for a string, ``(int,)`` for an int64 in
    range, ``(float, int)`` for a double (an int becomes a float). What the MLflow client
    sends in a log-batch; anything else (camelCase, strings for numbers...) takes the full
    parse, with its messages. The items are returned as they are, converted in place."""
    allowed = types.keys()
    doubles = tuple(key for key, kinds in types.items() if kinds[0] is float)

    def fast(items: Any) -> list[dict[str, Any]] | None:
        for item in items:
            if type(item) is not dict or not item.keys() <= allowed:
                return None
            for key, value in item.items():
                kinds = types[key]
                kind = type(value)
                if kind not in kinds or (kind is int and kinds[0] is int
                                         and not _INT64_MIN <= value <= _INT64_MAX):
                    return None
        for key in doubles:
            for item in items:
                if type(item.get(key)) is int:
                    item[key] = float(item[key])
        return items  # type: ignore[no-any-return]

    return fast


@dataclass(frozen=True)
class Message:
    fields: Mapping[str, Field] = field(default_factory=dict)

    @cached_property
    def plan(self) -> tuple[tuple[str, str, Field], ...]:
        """(snake name, camelCase name, spec) of each field, computed once."""
        return tuple((name, _camel(name), spec) for name, spec in self.fields.items())


def _path(prefix: str, name: str, index: int | None) -> str:
    return f"{prefix}{name}" if index is None else f"{prefix}{name}[{index}]"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(value)


def _bad_type(path: str, value: Any) -> MlflowError:
    return invalid_parameter(
        f"Invalid value {_dumps(value)} for parameter '{path}' supplied."
        f" Hint: Value was of type '{type(value).__name__}'." + HINT
    )


def missing(path: str) -> MlflowError:
    return invalid_parameter(f"Missing value for required parameter '{path}'." + HINT)


_SPECIAL_DOUBLES = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf,
                    "inf": math.inf, "-inf": -math.inf}


def _scalar(spec: Field, value: Any, prefix: str, name: str, index: int | None = None) -> Any:
    """``value`` checked and converted; the field's path (for messages) is only built when
    something is wrong, or to parse a nested message."""
    try:
        return _convert(spec, value, prefix, name, index)
    except _BadType:
        raise _bad_type(_path(prefix, name, index), value) from None


class _BadType(Exception):
    pass


def _convert(spec: Field, value: Any, prefix: str, name: str, index: int | None) -> Any:
    kind = spec.kind
    if kind == "string":
        if not isinstance(value, str):
            raise _BadType
        return value
    if kind == "int64":
        if isinstance(value, bool):
            raise _BadType
        number: int | None = None
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer() and value > _INT64_MIN:
            # orjson reads an integer literal below -2**63 as a float, and those up to 2**11
            # below round to -2**63 itself: refused, not stored as another number.
            number = int(value)
        elif isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                pass
        if number is None or not _INT64_MIN <= number <= _INT64_MAX:
            raise _BadType
        return number
    if kind == "double":
        if isinstance(value, bool):
            raise _BadType
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            special = _SPECIAL_DOUBLES.get(value.strip().lower())
            if special is not None:
                return special
            try:
                return float(value)
            except ValueError:
                pass
        raise _BadType
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise _BadType
    if kind == "enum":
        assert spec.enum is not None
        if isinstance(value, str) and value in spec.enum:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            for label, number in spec.enum.items():
                if number == value:
                    return label
        raise invalid_parameter(
            f"Invalid value {_dumps(value)} for parameter '{_path(prefix, name, index)}'"
            " supplied." + HINT
        )
    if kind == "bytes":
        if not isinstance(value, str):
            raise _BadType
        return value
    if kind == "message":
        assert spec.message is not None
        if not isinstance(value, dict):
            raise _BadType
        return parse(value, spec.message, _path(prefix, name, index) + ".")
    raise AssertionError(kind)


def parse(obj: Mapping[str, Any], message: Message, prefix: str = "") -> dict[str, Any]:
    """Parse one JSON object against ``message``. Raises :class:`MlflowError` (400)."""
    out: dict[str, Any] = {}
    for name, camel, spec in message.plan:
        has_snake = name in obj
        if camel != name and camel in obj:
            if has_snake:
                raise invalid_parameter(
                    f"Request specifies both '{name}' and '{camel}'; provide only one of them."
                )
            raw = obj[camel]
        elif has_snake:
            raw = obj[name]
        else:
            continue
        if raw is None:
            continue
        if spec.repeated:
            if not isinstance(raw, list):
                raise _bad_type(prefix + name, raw)
            quick = spec.fast(raw) if spec.fast is not None else None
            out[name] = quick if quick is not None else [
                _scalar(spec, item, prefix, name, i) for i, item in enumerate(raw)]
        else:
            out[name] = _scalar(spec, raw, prefix, name)
    return out


# The request as its route's message, parsed once by the enforcement point (or, with auth and
# workspaces off, by the access middleware): the permission check and the handler read this
# one object, never the request again.
MESSAGE = web.RequestKey("mlgate_message", dict)

# Fields that name one thing under two names; both sent with different values is refused.
_ALIASES = (("run_id", "run_uuid"),)


# How deep a request's JSON may nest ({"a": [1]} is 2): stock's protobuf parser stops at
# 100 too, and a bound keeps re-encoding a value (an error message) off Python's stack limit.
MAX_JSON_DEPTH = 100

_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_NOT_SHAPE = bytes(sorted(set(range(256)) - set(b'[]{}"')))


def _nests_deeper(raw: bytes, limit: int) -> bool:
    """Whether the JSON text ``raw`` (valid: it has been parsed) nests deeper than ``limit``.

    Read on the bytes at C speed, since walking a parsed log-batch costs as much as parsing
    it: drop escaped quotes, keep only brackets (as one kind) and quotes, take out what
    strings hold, then strip empty pairs; each pass strips exactly one level."""
    if len(raw) <= 2 * limit + 1:
        return False
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = raw.translate(_ONE_KIND, _NOT_SHAPE)
    if shape.count(b'"') == 2 * shape.count(b'""'):  # no string holds a bracket
        shape = shape.translate(None, b'"')
    else:
        shape = b"".join(shape.split(b'"')[::2])
    for _ in range(limit):
        if not shape:
            return False
        shape = shape.replace(b"[]", b"")
    return bool(shape)


# Content-Encoding of request bodies → zlib's wbits. The server runs with aiohttp's own
# decoding off (gateway/serving.py): its failures never reach the error middleware (a
# plain-text 400, or no answer at all for a bad deflate body).
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
            "deflate": zlib.MAX_WBITS}
MAX_DECODED_BODY = 64 * 1024**2  # a JSON body, once decoded (as client_max_size before)
_UNREADABLE = ("The request body could not be read: it is cut short or not in its "
               "Content-Encoding.")


class _Decoder:
    """Decodes a body in its Content-Encoding, member after member for gzip (RFC 1952 lets
    a gzip body be several members end to end); anything else after the end is refused."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._zlib = zlib.decompressobj(wbits)
        self._pending = b""  # the start of a next member, not decoded yet

    def decode(self, data: bytes, limit: int) -> bytes:
        """At most ``limit`` decoded bytes of ``data``; what is left waits in :attr:`tail`."""
        out = bytearray()
        try:
            while True:
                out += self._zlib.decompress(data, limit - len(out))
                if not (self._zlib.eof and self._zlib.unused_data):
                    return bytes(out)
                if self._wbits != _CODINGS["gzip"]:
                    raise zlib.error("data after the end of the stream")
                data = self._zlib.unused_data
                self._zlib = zlib.decompressobj(self._wbits)
                if len(out) >= limit:  # (a max_length of 0 would mean no limit)
                    self._pending = data
                    return bytes(out)
        except zlib.error:
            raise web.RequestPayloadError(_UNREADABLE) from None

    @property
    def tail(self) -> bytes:
        """Input not decoded yet because ``limit`` was reached; taken by reading it."""
        pending, self._pending = self._pending, b""
        return pending + self._zlib.unconsumed_tail

    def finish(self) -> None:
        """Refuse a body that ended inside a member."""
        if not self._zlib.eof or self._pending:
            raise web.RequestPayloadError(_UNREADABLE)


def _decoder(request: web.Request) -> _Decoder | None:
    """The body's decoder for its Content-Encoding, or None for a body as sent."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity"):
        return None
    wbits = _CODINGS.get(coding)
    if wbits is None:
        raise invalid_parameter(
            "Unsupported Content-Encoding of the request body: send gzip, deflate or none.")
    return _Decoder(wbits)


async def body_chunks(request: web.Request, chunk_size: int) -> AsyncIterator[bytes]:
    """The request body, decoded as its Content-Encoding says, chunk by chunk. A body that
    is not in its encoding raises ``RequestPayloadError`` (answered 400)."""
    decoder = _decoder(request)
    loop = asyncio.get_running_loop()
    async for chunk in request.content.iter_chunked(chunk_size):
        if decoder is None:
            yield chunk
            continue
        while chunk:  # at most chunk_size decoded bytes at a time: no bomb in memory
            # zlib releases the GIL: decoding in a thread leaves the event loop free.
            out = await loop.run_in_executor(None, decoder.decode, chunk, chunk_size)
            chunk = decoder.tail
            if out:
                yield out
    if decoder is not None:
        decoder.finish()


async def read_json_body(request: web.Request,
                         max_size: int = MAX_DECODED_BODY) -> dict[str, Any]:
    """The request's JSON object body (``{}`` when empty). POST and PUT must say
    ``application/json`` as stock's Flask layer requires; any other body is read as JSON
    whatever its label says, and refused when it is not JSON or nests deeper than
    :data:`MAX_JSON_DEPTH`. Every refusal is ``INVALID_PARAMETER_VALUE``, as on stock."""
    if request.method in ("POST", "PUT"):
        ctype = request.headers.get("Content-Type")
        if ctype is None:
            raise invalid_parameter("Bad Request. Content-Type header is missing.")
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            raise invalid_parameter(
                "Bad Request. Content-Type must be one of ['application/json'].")
    decoder = _decoder(request)
    raw = await request.read()
    if decoder is not None:
        raw = await asyncio.get_running_loop().run_in_executor(
            None, decoder.decode, raw, max_size)
        if decoder.tail:
            raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=max_size + 1)
        decoder.finish()
    if len(raw) > max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=len(raw))
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
        if isinstance(data, str):  # legacy clients double-encode
            raw = data.encode()
            data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson rejects bare NaN/Infinity tokens, which stock would store as a zero row.
        raise invalid_parameter(f"Malformed JSON request body: {exc.msg}") from None
    if not isinstance(data, dict):
        raise invalid_parameter("The request body must be a JSON object")
    if _nests_deeper(raw, MAX_JSON_DEPTH):
        raise invalid_parameter(
            f"The request body nests deeper than {MAX_JSON_DEPTH} levels of JSON.")
    return data


def _query_to_obj(query: MultiMapping[str], message: Message) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, camel, spec in message.plan:
        for key in (name, camel):
            if key in query:
                values = query.getall(key)
                obj[key] = values if spec.repeated else values[-1]
    return obj


async def read_request(request: web.Request, message: Message, *,
                       body: bool = True) -> dict[str, Any]:
    """The request parsed into ``message``, as stock reads it: the query string for a GET (or HEAD)
    that has one, otherwise the JSON body (``body=False``: the route streams its body, so
    only the query string); then the URL's path variables. A field named twice with
    different values (in the URL and the query or body, or as ``run_id`` and ``run_uuid``)
    is refused, never guessed."""
    if body and not (request.method in ("GET", "HEAD") and request.query_string):
        msg = parse(await read_json_body(request), message)
    elif request.query_string:
        if body and request.body_exists and (await request.read()).strip():
            # Stock would read the query and ignore the body; a client that sends both
            # means one of them, and guessing which is how a check and a handler part.
            raise invalid_parameter("Send the request's parameters in the query string or in "
                                    "the body, not both.")
        msg = parse(_query_to_obj(request.query, message), message)
    else:
        msg = {}
    for name, value in request.match_info.items():
        if msg.get(name, value) != value:
            raise invalid_parameter(
                f"'{name}' is given in the URL and again, with another value, in the request.")
        msg[name] = value
    for name, alias in _ALIASES:
        if msg.get(alias):
            if msg.get(name) and msg[name] != msg[alias]:
                raise invalid_parameter(
                    f"Request specifies both '{name}' and '{alias}' with different values.")
            msg[name] = msg[alias]
    return msg


def message_of(request: web.Request) -> dict[str, Any]:
    """The request's message as its route declares it (see :data:`MESSAGE`)."""
    return request[MESSAGE]


def decode_b64_json(token: str) -> Any:
    """Helper for page tokens: base64 of JSON, or ``ValueError``."""
    return orjson.loads(base64.b64decode(token, validate=False))
