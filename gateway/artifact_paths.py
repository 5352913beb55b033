"""Artifact paths from requests and artifact roots, checked before they reach a store.

:func:`validate_path` is stock MLflow's ``validate_path_is_safe`` (``mlflow/utils/uri.py``):
it URL-decodes repeatedly, then refuses anything that could leave the artifacts
destination. :func:`store_path` then drops the empty and ``.`` segments the filesystem would
ignore, so every backend sees the same key. :func:`proxied_root_path` maps a run's or model's
``artifact_uri`` (``mlflow-artifacts:/1/<run>/artifacts``) to its path inside the
destination.

Artifact roots are the server's: :func:`artifact_location` accepts an experiment's
``artifact_location`` only under a root this server serves (:func:`served_roots`) and
returns it normalized, and :func:`run_root` / :func:`logged_model_root` check, at each use,
that a stored root still is such a location and ends with its owner's own folder, so a
listing never leaves it. Pure functions, no I/O (but :func:`served_roots`, which resolves
the local destination's symlinks once per settings).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse, urlsplit, urlunparse

from backends.artifacts.local import STAGING
from backends.registry import artifact_scheme
from gateway.errors import MlflowError, invalid_parameter
from gateway.settings import Settings

__all__ = [
    "MAX_PATH_DEPTH",
    "PROXY_ROUTE_ANCHOR",
    "Location",
    "ServedRoots",
    "artifact_location",
    "invalid_location",
    "join_path",
    "logged_model_root",
    "parse_location",
    "proxied_root_path",
    "run_root",
    "served_roots",
    "store_path",
    "under_root",
    "validate_path",
]

# An http(s) artifact root points at the proxy's download route; what follows is the path.
PROXY_ROUTE_ANCHOR = "/api/2.0/mlflow-artifacts/artifacts/"

_MAX_DECODE_ROUNDS = 10
# Folders an artifact path may nest: far above any real artifact tree, and far below where
# a store recurses out of stack (os.makedirs, about 1,000) or a key outgrows S3's 1,024 bytes.
MAX_PATH_DEPTH = 200
# "C:", "c:foo": a Windows drive, absolute or drive-relative; never a valid artifact path.
_DRIVE = re.compile(r"^[A-Za-z]:")


def _invalid() -> MlflowError:
    return MlflowError("Invalid path", "INVALID_PARAMETER_VALUE")


def _decode(path: str) -> str:
    # Stock's `_decode`: unquote until a round trip stops changing the text, so a
    # double-encoded `%252e%252e` is seen as `..` too.
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(path)
        parsed = urlunparse(urlparse(decoded))
        if parsed == path:
            return path
        path = parsed
    raise _invalid()  # stock raises a bare ValueError (a 500); refusing is kinder


def _escape_control_characters(text: str) -> str:
    # Stock stores control characters as "%xx" text; doing the same finds its files.
    return "".join(
        f"%{ord(c):02x}" if ord(c) <= 31 or ord(c) == 127 else c for c in text
    )


def validate_path(path: str) -> str:
    """Check an artifact path from a request and return it decoded, as stock does.

    Raises :class:`MlflowError` ``INVALID_PARAMETER_VALUE`` "Invalid path" for a path that
    contains ``#``, a backslash, NUL or a ``..`` segment, or is absolute (``/x``, ``C:\\``,
    ``C:x``, ``file:///x``), after any number of URL-decodings; and for one more than
    :data:`MAX_PATH_DEPTH` segments deep.
    """
    if "\x00" in path:
        raise _invalid()
    path = _decode(path)
    # Checked again after decoding: "%00" only becomes NUL here, and a filesystem path
    # cannot hold it (stock would write "%00" literally).
    if "\x00" in path:
        raise _invalid()
    path = _escape_control_characters(path)
    if "#" in path:
        raise _invalid()
    if urlsplit(path).scheme == "file":
        # Stock turns file: URIs into paths before checking, so file:///etc is absolute.
        path = unquote(urlsplit(path).path)
    if (
        "\\" in path  # stock rejects only os.sep/altsep, i.e. not on Linux; we always do
        or ".." in path.split("/")
        or path.startswith("/")
        or _DRIVE.match(path)
    ):
        raise _invalid()
    if path.count("/") >= MAX_PATH_DEPTH and len(store_path(path).split("/")) > MAX_PATH_DEPTH:
        raise invalid_parameter(f"Invalid path: more than {MAX_PATH_DEPTH} segments deep")
    return path


def store_path(path: str) -> str:
    """``path`` (already validated) as a store key: no empty or ``.`` segments, no leading or
    trailing ``/``; ``""`` is the store's root."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def join_path(*parts: str) -> str:
    """Join store paths, skipping empty parts: ``join_path("1/r/artifacts", "")`` is
    ``"1/r/artifacts"``."""
    return store_path("/".join(parts))


def proxied_root_path(artifact_uri: str) -> str | None:
    """The path inside the artifacts destination of a proxied artifact root, or ``None``
    when ``artifact_uri`` is not proxied (a local path, ``s3://``…).

    Proxied roots are ``mlflow-artifacts:/<path>``, ``mlflow-artifacts://<host>/<path>`` and
    ``http(s)://<host>/…/api/2.0/mlflow-artifacts/artifacts/<path>`` (stock's
    ``_get_proxied_run_artifact_destination_path``). Raises :class:`MlflowError` "Invalid
    path" when the root's path would leave the destination.
    """
    parts = urlsplit(artifact_uri)
    scheme = parts.scheme.lower()
    if scheme == "mlflow-artifacts":
        path = parts.path
    elif scheme in ("http", "https") and PROXY_ROUTE_ANCHOR in parts.path:
        path = parts.path.split(PROXY_ROUTE_ANCHOR, 1)[1]
    else:
        return None
    path = path.lstrip("/")
    # Stock uses the root's raw text; we check it too, since a crafted artifact_location
    # would otherwise steer listings outside the destination.
    validate_path(path)
    return store_path(path)


# -- artifact roots: experiments' locations and the run and model roots built on them ----

# Refused anywhere in a location. "#" and "?" would push what is joined after them (the run
# id) out of the path: "…/artifacts#" + "/<run>/artifacts" is still "…/artifacts". ";" is
# urllib's params, "%" means other bytes to each reader (decoded by the proxy, literal in a
# bucket key), a backslash is a separator to Windows clients.
_REFUSED = frozenset("#?;%\\")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_PROXIED = "mlflow-artifacts"


class _Refused(ValueError):
    """Why a location is not accepted; the callers say whose location it was."""


@dataclass(frozen=True)
class Location:
    """An artifact location in the parts containment is decided on: the scheme (``file`` for
    a local path), the host (a bucket, ``container@account``; ``""`` for ``file`` and
    ``mlflow-artifacts``) and the path's segments, without empty or ``.`` ones. ``plain``
    remembers a local path written without ``file://``, to give it back the same way."""

    scheme: str
    host: str
    segments: tuple[str, ...]
    plain: bool = field(default=False, compare=False)

    @property
    def uri(self) -> str:
        """The normalized text: ``mlflow-artifacts:/a/b``, ``/srv/a``, ``file:///srv/a``,
        ``s3://bucket/a``."""
        path = "/".join(self.segments)
        if self.plain:
            return "/" + path
        if self.scheme == _PROXIED and not self.host:
            return f"{_PROXIED}:/{path}"
        if self.scheme == "file":
            return f"file:///{path}"
        return f"{self.scheme}://{self.host}" + (f"/{path}" if path else "")

    def child(self, *segments: str) -> Location:
        """This location with ``segments`` (each one segment, as joined by the stores)
        appended."""
        return Location(self.scheme, self.host, self.segments + segments, self.plain)

    def is_within(self, root: Location) -> bool:
        """Whether this location is ``root`` or lies below it, segment by segment."""
        n = len(root.segments)
        return (self.scheme, self.host) == (root.scheme, root.host) and (
            self.segments[:n] == root.segments)


def parse_location(text: str) -> Location:
    """Split an artifact location (an absolute path or a URI) into a :class:`Location`.

    Raises :class:`ValueError` with the reason for a location that is empty or padded with
    whitespace, holds ``#``, ``?``, ``;``, ``%``, a backslash or a control character, is a
    relative path or a Windows drive, has a ``..`` segment, or is a ``file`` URI naming a
    host other than ``localhost``.
    """
    if not text.strip() or text != text.strip():
        raise _Refused("it is empty or starts or ends with whitespace")
    if any(c in _REFUSED or ord(c) < 32 or ord(c) == 127 for c in text):
        raise _Refused("it contains '#', '?', ';', '%', a backslash or a control character")
    match = _SCHEME.match(text)
    plain = match is None or len(match.group(1)) == 1  # one letter: a drive, "C:/x"
    if plain:
        scheme, host, path = "file", "", text
    else:
        assert match is not None
        scheme, rest = match.group(1).lower(), text[match.end():]
        host, path = ("", rest)
        if rest.startswith("//"):
            host, slash, path = rest[2:].partition("/")
            path = slash + path
        if scheme == "file" and host.lower() == "localhost":
            host = ""
    if scheme == "file" and (host or not path.startswith("/")):
        raise _Refused("a local path must be absolute and on this host")
    segments = tuple(s for s in path.split("/") if s not in ("", "."))
    if ".." in segments:
        raise _Refused("it contains a '..' segment")
    return Location(scheme, host, segments, plain)


@dataclass(frozen=True)
class ServedRoots:
    """The roots this server serves artifacts from: ``mlflow-artifacts:/`` when it proxies
    artifacts, ``--default-artifact-root`` and ``--artifacts-destination``. ``advertised``
    is the one new experiments get, which errors name (the destination may be private)."""

    roots: tuple[Location, ...]
    advertised: str

    def serves(self, location: Location) -> bool:
        return any(location.is_within(root) for root in self.roots)


def _config_roots(uri: str) -> list[Location]:
    # A configured root may be relative or reached through a symlink; the stored locations
    # built on it are then either form, so both count.
    if artifact_scheme(uri) == "":
        texts = {os.path.abspath(uri), os.path.realpath(uri)}
    else:
        texts = {uri}
        if urlsplit(uri).scheme.lower() == "file":
            texts.add(os.path.realpath(unquote(urlsplit(uri).path)))
    roots = []
    for text in sorted(texts):
        try:
            roots.append(parse_location(text))
        except _Refused:
            pass  # a root we cannot parse strictly admits nothing
    return roots


def served_roots(settings: Settings) -> ServedRoots:
    """The roots ``settings`` serve (computed once for each set of the three settings)."""
    return _served_roots(settings.serve_artifacts, settings.default_artifact_root,
                         settings.artifacts_destination, settings.artifact_root)


@functools.lru_cache(maxsize=16)
def _served_roots(proxied: bool, default_root: str | None, destination: str,
                  advertised: str) -> ServedRoots:
    roots: list[Location] = []
    if proxied:
        roots.append(Location(_PROXIED, "", ()))
    if default_root:
        roots += _config_roots(default_root)
    roots += _config_roots(destination)
    if advertised == f"{_PROXIED}:":
        advertised = f"{_PROXIED}:/"
    return ServedRoots(tuple(dict.fromkeys(roots)), advertised)


def artifact_location(text: str, roots: ServedRoots) -> str:
    """The normalized form of an experiment's requested ``artifact_location``, accepted
    only under one of ``roots``.

    Raises :class:`MlflowError` ``INVALID_PARAMETER_VALUE`` for a location
    :func:`parse_location` refuses or that lies under no served root (another scheme,
    bucket or host, ``runs:/``, a path elsewhere on the server).
    """
    try:
        location = parse_location(text)
    except _Refused as exc:
        raise invalid_parameter(f"Invalid artifact_location '{text}': {exc}.") from None
    if not roots.serves(location):
        raise invalid_parameter(
            f"Invalid artifact_location '{text}': it must lie under this server's artifact "
            f"root '{roots.advertised}'.")
    for root in roots.roots:
        below = location.segments[len(root.segments):]
        if location.is_within(root) and below and below[0].isdigit():
            # "<root>/<digits>/..." is an experiment's own folder, which the proxy judges as
            # that experiment's: another one's runs there would be that team's to read.
            raise invalid_parameter(
                f"Invalid artifact_location '{text}': '{below[0]}' under the artifact root "
                "is an experiment's own folder.")
        if location.is_within(root) and below and below[0] == STAGING:
            # The local store's uploads in progress, which the sweep removes.
            raise invalid_parameter(
                f"Invalid artifact_location '{text}': '{STAGING}' under the artifact root "
                "is reserved by the server.")
    return location.uri


def _owned_root(uri: str, roots: ServedRoots, owner: str, own: tuple[str, ...]) -> Location:
    # A stored root is trusted no more than a requested one: rows written before these
    # checks (or by another server) may hold any text.
    text = uri
    if artifact_scheme(uri) == "" and uri.strip() and not uri.startswith("/"):
        # A relative root (from a relative --default-artifact-root) is read against the
        # server's working directory, as the local store reads it; joined, not normalized,
        # so a ".." in it is still seen.
        text = os.path.join(os.getcwd(), uri)
    try:
        location = parse_location(text)
    except _Refused as exc:
        reason = str(exc)
    else:
        if location.scheme == _PROXIED and not location.host and not roots.serves(location):
            reason = "this server does not serve artifacts (--no-serve-artifacts)"
        elif not roots.serves(location):
            reason = "it is not under an artifact root this server serves"
        elif location.segments[-len(own):] != own:
            reason = f"it does not end with the {owner}'s own folder '{'/'.join(own)}'"
        else:
            return location
    raise invalid_parameter(f"Cannot list artifacts of {owner}: its artifact root '{uri}' "
                            f"is refused, as {reason}.")


def run_root(uri: str, roots: ServedRoots, run_id: str) -> Location:
    """Run ``run_id``'s artifact root ``uri``, checked: a location :func:`artifact_location`
    would accept, ending with ``<run_id>/artifacts``. Raises :class:`MlflowError`
    ``INVALID_PARAMETER_VALUE`` otherwise."""
    return _owned_root(uri, roots, f"run '{run_id}'", (run_id, "artifacts"))


def logged_model_root(uri: str, roots: ServedRoots, model_id: str) -> Location:
    """:func:`run_root` for a logged model: its root ends with
    ``models/<model_id>/artifacts``."""
    return _owned_root(uri, roots, f"logged model '{model_id}'",
                       ("models", model_id, "artifacts"))


def invalid_location(uri: str) -> MlflowError:
    """The refusal of a stored location (a model version's) that no served root holds."""
    return invalid_parameter(f"Cannot read artifacts at '{uri}': it is not under an "
                             "artifact root this server serves.")


def under_root(root: Location, relative: str) -> Location:
    """The location of ``relative`` (a path :func:`validate_path` accepted) below ``root``.
    Raises :class:`MlflowError` "Invalid path" when it would not lie below ``root``."""
    target = root.child(*(s for s in store_path(relative).split("/") if s))
    if ".." in target.segments[len(root.segments):] or not target.is_within(root):
        raise _invalid()
    return target
