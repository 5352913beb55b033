"""Request-level validation of the model registry, with MLflow's limits and messages.

Pure functions raising :class:`backends.errors.InvalidArgument`, run before a store is
called (mlflow ``utils/validation.py`` and the source checks of ``server/handlers.py``).
"""

from __future__ import annotations

import os
import pathlib
import posixpath
import re
import urllib.parse

from backends.errors import InvalidArgument
from backends.metadata.interface.validation import invalid_value

__all__ = [
    "is_local_uri",
    "is_mlflow_artifacts_uri",
    "validate_alias",
    "validate_model_name",
    "validate_model_version_tag",
    "validate_registered_model_tag",
    "validate_source_for_model",
    "validate_source_for_run",
]

MAX_TAG_KEY_LENGTH = 250
MAX_TAG_VALUE_LENGTH = 100_000
MAX_ALIAS_LENGTH = 255

_TAG_KEY = re.compile(r"^[/\w.\- :]*$")
_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_BAD_CHARS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.),"
    " spaces ( ), colon(:) and slashes (/)."
)


def _missing(path: str) -> InvalidArgument:
    return InvalidArgument(f"Missing value for required parameter '{path}'.")


def _path_not_unique(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith(("..", "/"))


def _bad_path(path: str, name: str) -> InvalidArgument:
    return InvalidArgument(invalid_value(
        path, name,
        "Names may be treated as files in certain cases, and must not resolve to other names"
        f" when treated as such. This name would resolve to {posixpath.normpath(name)!r}"))


def validate_model_name(name: str | None, path: str = "name") -> str:
    if name is None or name.strip() == "":
        raise _missing(path)
    if "/" in name or ":" in name:
        raise InvalidArgument(f"Invalid model name '{name}'. Names cannot contain '/' or ':'.")
    if _path_not_unique(name):
        raise _bad_path(path, name)
    return name


def _validate_tag_key(key: str | None) -> str:
    if key is None:
        raise _missing("key")
    if not _TAG_KEY.match(key):
        raise InvalidArgument(invalid_value("key", key, _BAD_CHARS))
    if _path_not_unique(key):
        raise _bad_path("key", key)
    if len(key) > MAX_TAG_KEY_LENGTH:
        raise InvalidArgument(
            f"'key' exceeds the maximum length of {MAX_TAG_KEY_LENGTH} characters")
    return key


def _validate_tag_value(value: str | None) -> None:
    if value is not None and len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(
            f"'value' exceeds the maximum length of {MAX_TAG_VALUE_LENGTH} characters")


def validate_registered_model_tag(key: str | None, value: str | None) -> None:
    _validate_tag_key(key)
    _validate_tag_value(value)


def validate_model_version_tag(key: str | None, value: str | None) -> None:
    key = _validate_tag_key(key)
    if value is None:
        raise _missing("value")
    if key == "mlflow.prompt.text" and len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(
            f"Prompt text exceeds max length of {MAX_TAG_VALUE_LENGTH} characters.")
    _validate_tag_value(value)


def validate_alias(alias: str | None, *, reserved: bool) -> str:
    """An alias name; with ``reserved``, also refuse ``latest`` and ``v<digits>`` (setting)."""
    if not alias:
        raise InvalidArgument("Registered model alias name cannot be empty.")
    if not _ALIAS.match(alias):
        raise InvalidArgument(
            f"Invalid alias name: '{alias}'. Names may only contain alphanumerics, "
            "underscores (_), and dashes (-).")
    if len(alias) > MAX_ALIAS_LENGTH:
        raise InvalidArgument(
            f"'Registered model alias name' exceeds the maximum length of "
            f"{MAX_ALIAS_LENGTH} characters")
    if reserved:
        if alias.lower() == "latest":
            raise InvalidArgument("'latest' alias name (case insensitive) is reserved.")
        if _VERSION_ALIAS.match(alias):
            raise InvalidArgument(f"Version alias name '{alias}' is reserved.")
    return alias


# -- model version sources (stock: server/handlers.py _validate_source_run/_model) ---------


def is_local_uri(uri: str) -> bool:
    scheme = urllib.parse.urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and uri[1:2] == ":")


def _local_path(uri: str) -> pathlib.Path:
    parsed = urllib.parse.urlparse(uri)
    path = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri
    return pathlib.Path(path).resolve()


def _relative_refs_rejected(source: str) -> None:
    message = (
        f"Invalid model version source: '{source}'. If supplying a source as an http, https, "
        "local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be "
        "provided without relative path references present. Please provide an absolute path."
    )
    while (unquoted := urllib.parse.unquote_plus(source)) != source:
        source = unquoted
    source_path = re.sub(r"/+", "/", urllib.parse.urlparse(source).path.rstrip("/"))
    if "\x00" in source_path or any(p == ".." for p in source.split("/")):
        raise InvalidArgument(message)
    resolved = os.path.splitdrive(pathlib.Path(source_path).resolve().as_posix())[1]
    if resolved != source_path:
        raise InvalidArgument(message)


def _uri_parts(uri: str) -> tuple[str, str, tuple[str, ...]]:
    parsed = urllib.parse.urlsplit(uri)

    def unquote(part: str) -> str:
        while (once := urllib.parse.unquote(part)) != part:
            part = once
        return part

    return (parsed.scheme.lower(), parsed.netloc.lower(),
            tuple(unquote(p) for p in parsed.path.split("/") if p))


def _within(source: str, root: str) -> bool:
    s_scheme, s_host, s_parts = _uri_parts(source)
    r_scheme, r_host, r_parts = _uri_parts(root)
    return (s_scheme == r_scheme and s_host == r_host and bool(r_parts)
            and s_parts[:len(r_parts)] == r_parts)


def is_mlflow_artifacts_uri(source: str) -> bool:
    scheme, _, parts = _uri_parts(source)
    if scheme == "mlflow-artifacts":
        return True
    route = ("api", "2.0", "mlflow-artifacts", "artifacts")
    return scheme in ("http", "https") and any(
        parts[i:i + 4] == route for i in range(len(parts) - 3))


def _not_contained(source: str, id_name: str) -> InvalidArgument:
    return InvalidArgument(
        f"Invalid model version source: '{source}'. The {id_name} request parameter must "
        "identify the resource that contains the source.")


def _models_uri_model_id(source: str) -> str | None:
    path = source[len("models:"):].lstrip("/")
    return path if path.startswith("m-") and "/" not in path else None


def models_uri_target(source: str) -> tuple[str, str] | None:
    """What a ``models:/`` source names, read as stock's parser reads it:
    ``("registered_model", name)`` for ``models:/name/suffix`` and ``models:/name@alias``,
    ``("logged_model", id)`` for ``models:/<id>``; ``None`` for other or malformed sources."""
    parsed = urllib.parse.urlparse(source, allow_fragments=False)
    if parsed.scheme != "models" or not parsed.path.startswith("/") or len(parsed.path) <= 1:
        return None
    parts = parsed.path.lstrip("/").split("/")
    if len(parts) > 2 or not parts[0].strip():
        return None
    if len(parts) == 2:
        return ("registered_model", parts[0]) if parts[1].strip() else None
    if "@" in parts[0]:
        name, _, alias = parts[0].rpartition("@")
        return ("registered_model", name) if alias.strip() else None
    return ("logged_model", parts[0])


def validate_source_for_run(source: str, run_id: str | None, artifact_uri: str | None) -> None:
    """``artifact_uri`` is the run's (``None`` when no run or an unknown one)."""
    if is_local_uri(source):
        if run_id and artifact_uri is not None and is_local_uri(artifact_uri):
            path, root = _local_path(source), _local_path(artifact_uri)
            if root == path or root in path.parents:
                return
        raise InvalidArgument(
            f"Invalid model version source: '{source}'. To use a local path as a model version "
            "source, the run_id request parameter has to be specified and the local path has "
            "to be contained within the artifact directory of the run specified by the run_id.")
    _relative_refs_rejected(source)
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "runs":
        source_run = parsed.path.lstrip("/").split("/", 1)[0]
        if parsed.netloc or not run_id or source_run != run_id:
            raise _not_contained(source, "run_id")
        return
    if parsed.scheme == "models" and (parsed.netloc or _models_uri_model_id(source)):
        raise _not_contained(source, "model_id")
    if is_mlflow_artifacts_uri(source):
        if run_id and artifact_uri is not None and _within(source, artifact_uri):
            return
        raise _not_contained(source, "run_id")


def validate_source_for_model(source: str, model_id: str,
                              artifact_location: str | None) -> None:
    """``artifact_location`` is the logged model's (``None`` when it is unknown)."""
    if is_local_uri(source):
        if artifact_location is not None and is_local_uri(artifact_location):
            path, root = _local_path(source), _local_path(artifact_location)
            if root == path or root in path.parents:
                return
        raise InvalidArgument(
            f"Invalid model version source: '{source}'. To use a local path as a model version "
            "source, the model_id request parameter has to be specified and the local path has "
            "to be contained within the artifact directory of the run specified by the "
            "model_id.")
    _relative_refs_rejected(source)
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "models":
        if parsed.netloc:
            raise _not_contained(source, "model_id")
        source_model = _models_uri_model_id(source)
        if source_model is not None:
            if source_model == model_id:
                return
            raise _not_contained(source, "model_id")
    if parsed.scheme == "runs":
        raise _not_contained(source, "model_id")
    if is_mlflow_artifacts_uri(source):
        if artifact_location is not None and _within(source, artifact_location):
            return
        raise _not_contained(source, "model_id")
