"""Artifact paths from requests and artifact roots, checked before they reach a store.

:func:`validate_path` is stock MLflow's ``validate_path_is_safe`` (``mlflow/utils/uri.py``):
it URL-decodes repeatedly, then refuses anything that could leave the artifacts
destination. :func:`store_path` then drops the empty and ``.`` segments the filesystem would
ignore, so every backend sees the same key. :func:`proxied_root_path` maps a run's or model's
``artifact_uri`` (``mlflow-artifacts:/1/<run>/artifacts``) to its path inside the
destination. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlparse, urlsplit, urlunparse

from gateway.errors import MlflowError

__all__ = [
    "PROXY_ROUTE_ANCHOR",
    "join_path",
    "proxied_root_path",
    "store_path",
    "validate_path",
]

# An http(s) artifact root points at the proxy's download route; what follows is the path.
PROXY_ROUTE_ANCHOR = "/api/2.0/mlflow-artifacts/artifacts/"

_MAX_DECODE_ROUNDS = 10
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
    ``C:x``, ``file:///x``), after any number of URL-decodings.
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
