"""The enforcement point: one middleware that selects the workspace, authenticates, parses
the request into its route's message, and authorizes every resource that message names
before the handler runs, which reads the same message (:func:`gateway.parsing.message_of`).

What a route touches is whatever its :class:`~auth.access.Access` declares: the resource its
``locator`` field names (every one, when the field is repeated) and each of its ``refs``
(a logged model named inside a metric, a model version's source run…). Each is resolved
(:mod:`gateway.security.resolution`) and judged by :func:`auth.is_allowed`. A resource of
another workspace is answered 404, a missing id 400, a refusal 403; nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Middleware

from auth.access import Access, Action, ResourceKind, named
from auth.identity import Identity
from auth.names import WORKSPACE_NAME, valid_team_name
from auth.policy import DEFAULT_WORKSPACE, is_allowed, refusal, role_of
from auth.rate_limits import Verdict
from backends import errors as be
from backends.metadata.interface.auth_entities import Visibility
from gateway.errors import BASE_PATH, MlflowError, cut_off, from_backend
from gateway.parsing import message_of, missing
from gateway.routing import API, Route, declared, parse_into
from gateway.security.authentication import RateLimited, Unauthenticated
from gateway.security.resolution import Target
from gateway.security.state import SECURITY, Security, security_of

__all__ = [
    "WORKSPACE_HEADER",
    "WORKSPACE_NAME",
    "Admission",
    "admission_of",
    "enforcer",
    "identity_of",
    "note_created",
    "visibility_of",
    "workspace_of",
]

WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="mlflow"'}
_UNAUTHENTICATED = (
    "You are not authenticated. Please see "
    "https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to "
    "authenticate.")
# Not found messages as the handlers (the stores) word them, for a named resource that
# does not exist.
_NOT_FOUND = {
    ResourceKind.EXPERIMENT: "No Experiment with id={} exists",
    ResourceKind.REGISTERED_MODEL: "Registered Model with name={} not found",
    ResourceKind.ARTIFACT_PATH: "No such artifact: '{}'",
    ResourceKind.RUN: "Run with id={} not found",
    ResourceKind.LOGGED_MODEL: "Logged model with ID '{}' not found.",
    ResourceKind.GRANT_TARGET: "No resource with id={} exists",
}


class Admission(NamedTuple):
    """Who a request was admitted as, in which workspace, and what it names first (for the
    audit record)."""

    identity: Identity | None  # None: auth off, or a public route
    workspace: str
    target: Target | None


class _Refused(MlflowError):
    """A 403, with what was refused for the audit record."""

    def __init__(self, message: str, target: Target) -> None:
        super().__init__(message, "PERMISSION_DENIED")
        self.target = target


class _Hidden(MlflowError):
    """A 404 for what the request names, for the audit record: ``denied`` when it exists
    but the caller may not learn that (the answer is the same as for nothing)."""

    def __init__(self, kind: ResourceKind, key: str, by_name: bool, *, denied: bool) -> None:
        super().__init__(_not_found(kind, key, by_name).message, "RESOURCE_DOES_NOT_EXIST")
        self.named = (kind.value, key)
        self.denied = denied


_ADMITTED = web.RequestKey("mlgate_admission", Admission)
_CREATED = web.RequestKey("mlgate_created", str)


# -- what the handlers read --------------------------------------------------------------


def admission_of(request: web.BaseRequest) -> Admission | None:
    """Who the request came from and in which workspace, once authenticated and its
    workspace selected (its target once admitted); None before that, or with auth and
    workspaces off."""
    return request.get(_ADMITTED)


def workspace_of(request: web.Request) -> str:
    """The request's workspace (``default`` when workspaces are off or none was sent)."""
    admitted = admission_of(request)
    return DEFAULT_WORKSPACE if admitted is None else admitted.workspace


def identity_of(request: web.Request) -> Identity | None:
    admitted = admission_of(request)
    return None if admitted is None else admitted.identity


def visibility_of(request: web.Request) -> Visibility | None:
    """What a search in this request may return; None when auth and workspaces are off."""
    sec = security_of(request)
    if sec is None:
        return None
    return sec.visibility(identity_of(request), workspace_of(request))


def note_created(request: web.Request, resource_id: str) -> None:
    """The id of what the handler created, for the audit record."""
    request[_CREATED] = resource_id


# -- the middleware ------------------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _audited(sec: Security, route: Route | None, request: web.Request) -> bool:
    """Writes, permission changes and artifact downloads are audited (auth on)."""
    if sec.audit is None:
        return False
    if route is None:
        return True
    access = route.access
    return (access.action is not Action.READ or access.writes or route.download
            or (access.resource is ResourceKind.ARTIFACT_PATH and request.method == "GET"
                and "path" in request.match_info))


def _label(request: web.Request, route: Route | None) -> str:
    """The audit record's action: the method and the path without the 2.0 API prefixes."""
    if route is not None and route.prefixes == API:
        return f"{request.method} {route.path}"
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    canonical = canonical.removeprefix(request.app.get(BASE_PATH, ""))
    for prefix in ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"):
        if canonical.startswith(prefix):
            canonical = canonical[len(prefix) - 1:]
            break
    return f"{request.method} {canonical}"


def _status_of(request: web.Request, exc: BaseException) -> int:
    """The status the error middleware answers ``exc`` with, for the audit record."""
    if isinstance(exc, MlflowError):
        return exc.status
    if isinstance(exc, be.BackendError):
        return from_backend(exc).status
    if isinstance(exc, web.HTTPException):
        return exc.status
    return 400 if cut_off(request, exc) else 500


def enforcer() -> Middleware:
    """The middleware of an app with auth or workspaces on, in place of
    :func:`gateway.routing.access_middleware`."""

    @web.middleware
    async def enforce(request: web.Request, handler: _Handler) -> web.StreamResponse:
        route = declared(request)
        if route is None and request.match_info.http_exception is not None:
            return await handler(request)  # 404/405: no route to check
        sec = request.app[SECURITY]
        public = route is not None and route.access.resource is ResourceKind.PUBLIC
        # Workspace CRUD names its workspace in the URL, not the header.
        exempt = public or (route is not None and route.path.startswith("/workspaces"))
        identity: Identity | None = None
        if sec.auth_on and not public:
            try:
                identity = await sec.authenticator.authenticate(request)
            except Unauthenticated:
                return web.json_response(
                    {"error_code": "UNAUTHENTICATED", "message": _UNAUTHENTICATED},
                    status=401, headers=_CHALLENGE)
            except RateLimited as exc:
                sec.rate_limited += 1
                return web.json_response(
                    {"error_code": "REQUEST_LIMIT_EXCEEDED",
                     "message": "Too many failed logins; try again later."},
                    status=429, headers={"Retry-After": str(exc.retry_after)})
        workspace = DEFAULT_WORKSPACE if exempt else await _workspace(sec, request, identity)
        # Who asked, before the check: the access log names the caller of a refused request
        # too. Handlers run only once the full admission below replaces it.
        request[_ADMITTED] = Admission(identity, workspace, None)
        # Rate limits: the request now, its metric rows once its message is parsed.
        counted = None
        # Anyone may name any team in the header: an outsider's request must neither spend
        # that team's budget nor learn from its limit that it exists, nor take a place in
        # its (or a made-up name's) share of the store's connections.
        outsider = sec.auth_on and not _insider(sec, identity, workspace)
        share = f"user:{identity.user_id}" if outsider and identity is not None else workspace
        if sec.limits.active:
            caller = _caller(identity)
            # Server administration (/metrics, the admin API…) is no team's work either.
            teamless = exempt or route is None or route.access.resource is ResourceKind.SERVER
            # Nor is an outsider's (above).
            team = None if teamless or outsider else workspace
            counted = sec.limits.charge(team, caller)
            if counted is not None and not counted.admitted:
                raise _over_limit(counted, "requests")
            empty = (sec.limits.refuses_rows(team, caller)
                     if team is not None and route is not None and route.rows is not None
                     else None)
            if empty is not None:
                raise _over_limit(empty, "metric rows")
        if not _audited(sec, route, request):
            request[_ADMITTED] = await _admit(sec, request, route, identity, workspace)
            counted = _charge_rows(sec, route, request, identity, workspace) or counted
            async with _pool_share(sec, route, share):
                return _with_limit(await handler(request), counted)
        username = identity.username if identity else None
        label = _label(request, route)
        target: Target | None = None
        try:
            admission = await _admit(sec, request, route, identity, workspace)
            request[_ADMITTED] = admission
            target = admission.target
            counted = _charge_rows(sec, route, request, identity, workspace) or counted
            async with _pool_share(sec, route, share):
                response = _with_limit(await handler(request), counted)
        except BaseException as exc:
            status = _status_of(request, exc)
            named: tuple[str | None, str | None] = (target.kind, target.id) if target else (None, None)
            denied = status == 403
            if isinstance(exc, _Refused):
                named = exc.target.kind, exc.target.id
            elif isinstance(exc, _Hidden):
                named, denied = exc.named, exc.denied
            sec.audit_record(request, username, workspace, label, *named,
                             "denied" if denied else "error", status)
            raise
        status = response.status
        sec.audit_record(request, username, workspace, label, target.kind if target else None,
                         request.get(_CREATED) or (target.id if target else None),
                         "ok" if status < 400 else "error", status)
        return response

    return enforce


def _pool_share(sec: Security, route: Route | None,
                share: str) -> AbstractAsyncContextManager[None]:
    """The workspace's (an outsider's: their own) place among the store's connections
    (:mod:`.shares`), for a handler that reads or writes the store itself: metric writes go
    through the batcher's own fair queue, and artifact transfers hold no connection while
    they stream."""
    if route is None or route.rows is not None or route.access.resource in _UNPOOLED:
        return nullcontext()
    return sec.pool_shares.held(share)


_UNPOOLED = frozenset({ResourceKind.ARTIFACT_PATH, ResourceKind.PUBLIC})


def _caller(identity: Identity | None) -> str | None:
    """Whom the per-caller limits count a request against: its token, else its user."""
    if identity is None:
        return None
    return f"token:{identity.token_id}" if identity.token_id else f"user:{identity.user_id}"


def _charge_rows(sec: Security, route: Route | None, request: web.Request,
                 identity: Identity | None, workspace: str) -> Verdict | None:
    """Charge the metric rows the parsed message writes; raises the 429 when over."""
    if route is None or route.rows is None or not sec.limits.active:
        return None
    rows = route.rows(message_of(request))
    verdict = sec.limits.charge(workspace, _caller(identity), rows) if rows > 0 else None
    if verdict is not None and not verdict.admitted:
        raise _over_limit(verdict, "metric rows")
    return verdict


def _limit_headers(verdict: Verdict) -> dict[str, str]:
    """The IETF draft's RateLimit fields: the bucket's size, what is left of it, and the
    seconds until it is full again."""
    return {"RateLimit-Limit": str(verdict.limit),
            "RateLimit-Remaining": str(verdict.remaining),
            "RateLimit-Reset": str(verdict.reset)}


def _over_limit(verdict: Verdict, what: str) -> MlflowError:
    sec_s = "second" if verdict.retry_after == 1 else "seconds"
    return MlflowError(
        f"Too many {what} for this workspace or token: over its rate limit. Retry in "
        f"{verdict.retry_after} {sec_s}.", "REQUEST_LIMIT_EXCEEDED",
        {"Retry-After": str(verdict.retry_after), **_limit_headers(verdict)})


def _with_limit(response: web.StreamResponse,
                verdict: Verdict | None) -> web.StreamResponse:
    if verdict is not None and not response.prepared:  # a download has sent its headers
        response.headers.update(_limit_headers(verdict))
    return response


async def _workspace(sec: Security, request: web.Request, identity: Identity | None) -> str:
    """The workspace the request selects. Whether it exists is told only to administrators
    and its members: for anyone else one that does not exist is an empty one (they may
    create nothing in either, and find only what they were granted)."""
    if not sec.workspaces_on:
        return DEFAULT_WORKSPACE
    name = request.headers.get(WORKSPACE_HEADER, "").strip() or DEFAULT_WORKSPACE
    if not valid_team_name(name):
        # No workspace has such a name (nor 8 KB of one, which the access log and the audit
        # would keep); it may not even be UTF-8 (aiohttp keeps such header bytes as
        # surrogates, which no database takes and no error message can show).
        raise MlflowError("The X-MLFLOW-WORKSPACE header names no workspace.",
                          "RESOURCE_DOES_NOT_EXIST")
    if name == DEFAULT_WORKSPACE or (sec.auth_on and not _insider(sec, identity, name)):
        return name
    if not await sec.resolver.workspace_exists(name):
        raise MlflowError(f"Workspace '{name}' not found.", "RESOURCE_DOES_NOT_EXIST")
    return name


def _insider(sec: Security, identity: Identity | None, workspace: str) -> bool:
    """An administrator, or a member of ``workspace``: someone who may know what is in it."""
    return identity is not None and (
        identity.is_admin or role_of(identity, workspace, sec.policy) is not None)


async def _admit(sec: Security, request: web.Request, route: Route | None,
                 identity: Identity | None, workspace: str) -> Admission:
    """Parse the request and authorize everything it names; raises MlflowError (400, 403,
    404) or a backend error."""
    if route is None:  # registered without a declaration: administrators only
        if not sec.auth_on or identity is None or not identity.is_admin:
            raise MlflowError("Permission denied: the route declares no access rule.",
                              "PERMISSION_DENIED")
        return Admission(identity, workspace, None)
    await parse_into(request, route)
    msg = message_of(request)
    access = route.access
    if (access.writes and identity is not None and identity.scope is not None
            and identity.scope.read_only):
        raise MlflowError("Permission denied: the token is read-only.", "PERMISSION_DENIED")
    by_name = access.locator == "experiment_name"
    first: Target | None = None
    for kind, action, key, primary in _named(access, msg, workspace):
        found = await sec.resolver.target(kind, key, workspace, by_name=by_name,
                                          resource_type=msg.get("resource_type"))
        if found is None or found.foreign:
            if primary:
                raise _Hidden(kind, key, by_name, denied=found is not None)
            # A reference that names nothing readable: refused like an unreadable one, so
            # the answer does not tell which ids exist elsewhere.
            raise MlflowError(f"Permission denied: {kind.value.replace('_', ' ')} '{key}' "
                              "is not readable.", "PERMISSION_DENIED")
        if sec.auth_on and not is_allowed(identity, action, found.resource, sec.policy):
            # Its own team may learn that it exists (stock's 403); anyone else is answered
            # as for an id that names nothing, unless they may read it.
            if primary and kind in _NOT_FOUND and not _insider(
                    sec, identity, found.resource.workspace) and (
                    action is Action.READ or not is_allowed(
                        identity, Action.READ, found.resource, sec.policy)):
                raise _Hidden(kind, key, by_name, denied=True)
            if kind is ResourceKind.ARTIFACT_PATH and found.resource.kind is ResourceKind.SERVER:
                # A folder of no experiment (administrators only) is answered as missing, as
                # one of another team's experiment is: which ids exist is not told.
                raise _Hidden(kind, key, by_name, denied=True)
            what = access.creates or kind if primary else kind
            raise _Refused("Permission denied: " + refusal(
                identity, action, what, found.resource.workspace), found)
        first = first or found
    return Admission(identity, workspace, first)


def _not_found(kind: ResourceKind, key: str, by_name: bool) -> MlflowError:
    template = ("Could not find experiment with name '{}'" if by_name
                else _NOT_FOUND.get(kind, "No {} exists"))
    return MlflowError(template.format(key), "RESOURCE_DOES_NOT_EXIST")


class _Named(NamedTuple):
    """A resource a request names, and what it must be allowed to do to it."""

    kind: ResourceKind
    action: Action
    key: str
    primary: bool  # the route's own resource, not a reference (Access.refs)


def _named(access: Access, msg: dict[str, object], workspace: str) -> list[_Named]:
    """Everything the message names, the route's own resources first."""
    kind = access.resource
    if kind in (ResourceKind.PUBLIC, ResourceKind.SERVER) or (
            kind is ResourceKind.WORKSPACE and access.locator is None):
        keys = [workspace]
        kind = ResourceKind.WORKSPACE if kind is ResourceKind.WORKSPACE else kind
    else:
        keys = named(msg, access.locator or "")
        if not keys:
            if access.default is None and kind is not ResourceKind.ARTIFACT_PATH:
                raise missing(access.locator or kind.value)
            keys = [access.default or ""]
    out = [_Named(kind, access.action, key, True) for key in _once(keys)]
    for ref in access.refs:
        out += [_Named(ref.resource, ref.action, key, ref.primary)
                for key in _once(named(msg, ref.field, empty=ref.strict))]
    return out


def _once(keys: list[str]) -> list[str]:
    return keys if len(keys) < 2 else list(dict.fromkeys(keys))
