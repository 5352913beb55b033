"""The pure permission check, as a table that reads like the policy."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from auth import hashing
from auth.access import Action, ResourceKind
from auth.identity import Identity, InvalidToken, TokenRecord, TokenScope
from auth.permissions import Permission, TeamRole
from auth.policy import (
    DEFAULT_WORKSPACE,
    Grant,
    Policy,
    Principal,
    Resource,
    effective_permission,
    is_allowed,
    principals_of,
    refusal,
    role_of,
)
from backends.metadata.interface import entities

EXP = ResourceKind.EXPERIMENT
R, C, U, D, M = Action.READ, Action.CREATE, Action.UPDATE, Action.DELETE, Action.MANAGE


def user(uid: int = 7, *, admin: bool = False, teams: dict[str, TeamRole] | None = None,
         scope: TokenScope | None = None, roles: frozenset[int] = frozenset()) -> Identity:
    return Identity(uid, f"u{uid}", admin, MappingProxyType(teams or {}), scope, roles)


def exp(*grants: tuple[str, str, Permission], ws: str = "a") -> Resource:
    return Resource(EXP, ws, tuple(Grant(Principal(k, n), p) for k, n, p in grants))


def ws(name: str) -> Resource:
    return Resource(ResourceKind.WORKSPACE, name)


MEMBER = {"a": TeamRole.MEMBER}
OPEN = Policy(default_workspace_open=True)  # every user is a member of "default"
CLOSED = Policy(default_workspace_open=False)
CASES = [
    # (who, action, resource, policy, allowed)
    ("anonymous", None, R, exp(), Policy(), False),
    ("admin, no grant", user(admin=True), D, exp(), Policy(), True),
    ("member, no grant, default none", user(teams=MEMBER), R, exp(), Policy(), False),
    ("member, default READ", user(teams=MEMBER), R, exp(), Policy(Permission.READ), True),
    ("member, default READ, update", user(teams=MEMBER), U, exp(), Policy(Permission.READ),
     False),
    ("READ grant reads", user(), R, exp(("user", "7", Permission.READ)), Policy(), True),
    ("READ grant cannot update", user(), U, exp(("user", "7", Permission.READ)), Policy(),
     False),
    ("EDIT updates", user(), U, exp(("user", "7", Permission.EDIT)), Policy(), True),
    ("EDIT cannot delete", user(), D, exp(("user", "7", Permission.EDIT)), Policy(), False),
    ("MANAGE deletes", user(), D, exp(("user", "7", Permission.MANAGE)), Policy(), True),
    ("someone else's grant", user(), R, exp(("user", "8", Permission.MANAGE)), Policy(), False),
    ("team grant", user(teams=MEMBER), U, exp(("team", "a", Permission.EDIT)), Policy(), True),
    ("user DENY beats team MANAGE", user(teams=MEMBER), R,
     exp(("team", "a", Permission.MANAGE), ("user", "7", Permission.DENY)), Policy(), False),
    ("DENY beats member default", user(teams=MEMBER), R, exp(("user", "7", Permission.DENY)),
     Policy(Permission.MANAGE), False),
    ("grant floored at member default", user(teams=MEMBER), U,
     exp(("user", "7", Permission.READ)), Policy(Permission.EDIT), True),
    ("workspace manager", user(teams={"a": TeamRole.MANAGER}), D, exp(), Policy(), True),
    ("manager of another workspace", user(teams={"b": TeamRole.MANAGER}), R, exp(), Policy(),
     False),
    ("read-only token cannot write", user(scope=TokenScope(read_only=True)), U,
     exp(("user", "7", Permission.MANAGE)), Policy(), False),
    ("read-only token reads", user(scope=TokenScope(read_only=True)), R,
     exp(("user", "7", Permission.MANAGE)), Policy(), True),
    ("workspace token elsewhere", user(admin=True, scope=TokenScope(workspace="b")), R, exp(),
     Policy(), False),
    ("role grant", user(roles=frozenset({3})), U, exp(("role", "3", Permission.EDIT)),
     Policy(), True),
    ("another role's grant", user(roles=frozenset({3})), R,
     exp(("role", "4", Permission.MANAGE)), Policy(), False),
    ("role DENY beats user MANAGE", user(roles=frozenset({3})), R,
     exp(("user", "7", Permission.MANAGE), ("role", "3", Permission.DENY)), Policy(), False),
    ("highest of user and role grants", user(roles=frozenset({3})), D,
     exp(("user", "7", Permission.READ), ("role", "3", Permission.MANAGE)), Policy(), True),
    ("a team named like a role id is not the role", user(teams={"3": TeamRole.MEMBER}), R,
     exp(("role", "3", Permission.READ)), Policy(), False),
    # The default workspace, open (as on stock MLflow) or closed like any team.
    ("open default: a user in no team creates there", user(), C, ws("default"), OPEN, True),
    ("closed default: a user in no team may not", user(), C, ws("default"), CLOSED, False),
    ("closed default: its members still may", user(teams={"default": TeamRole.MEMBER}), C,
     ws("default"), CLOSED, True),
    ("open default opens no other workspace", user(), C, ws("a"), OPEN, False),
    ("open default makes members, not managers", user(), M, ws("default"), OPEN, False),
    ("open default: others' experiments get the member default only", user(), R,
     exp(ws="default"), OPEN, False),
    ("open default with member default READ: reads there", user(), R, exp(ws="default"),
     Policy(Permission.READ, default_workspace_open=True), True),
    ("closed default with member default READ: reads nothing there", user(), R,
     exp(ws="default"), Policy(Permission.READ, default_workspace_open=False), False),
    ("open default: what a user created (creator grant MANAGE) they delete", user(), D,
     exp(("user", "7", Permission.MANAGE), ws="default"), OPEN, True),
    ("open default: a grant to team default reaches every user", user(), U,
     exp(("team", "default", Permission.EDIT), ws="default"), OPEN, True),
    ("closed default: a grant to team default reaches its members only", user(), U,
     exp(("team", "default", Permission.EDIT), ws="default"), CLOSED, False),
    ("open default: DENY still wins", user(), R,
     exp(("user", "7", Permission.DENY), ws="default"),
     Policy(Permission.MANAGE, default_workspace_open=True), False),
    ("open default: a manager of default stays manager",
     user(teams={"default": TeamRole.MANAGER}), D, exp(ws="default"), OPEN, True),
    ("open default: a token for workspace a may not create in default",
     user(scope=TokenScope(workspace="a")), C, ws("default"), OPEN, False),
    ("open default: a read-only token may not create", user(scope=TokenScope(read_only=True)),
     C, ws("default"), OPEN, False),
    ("open default: anonymous may not create", None, C, ws("default"), OPEN, False),
]


@pytest.mark.parametrize(("who", "ident", "action", "resource", "policy", "allowed"), CASES,
                         ids=[c[0] for c in CASES])
def test_is_allowed(who: str, ident: Identity | None, action: Action, resource: Resource,
                    policy: Policy, allowed: bool) -> None:
    assert is_allowed(ident, action, resource, policy) is allowed


def test_workspace_and_server_kinds() -> None:
    ws = Resource(ResourceKind.WORKSPACE, "a")
    assert is_allowed(user(teams=MEMBER), Action.CREATE, ws)
    assert not is_allowed(user(), Action.CREATE, ws)
    assert is_allowed(user(), Action.READ, ws)  # searches: rows are filtered instead
    assert not is_allowed(user(teams=MEMBER), Action.MANAGE, ws)
    assert is_allowed(user(teams={"a": TeamRole.MANAGER}), Action.MANAGE, ws)
    server = Resource(ResourceKind.SERVER, "a")
    assert not is_allowed(user(teams={"a": TeamRole.MANAGER}), Action.READ, server)
    assert is_allowed(user(admin=True), Action.MANAGE, server)
    assert is_allowed(None, Action.READ, Resource(ResourceKind.PUBLIC, "a"))
    # Runs, models and paths are judged as their experiment: unresolved, they are refused.
    assert not is_allowed(user(teams=MEMBER), Action.READ, Resource(ResourceKind.RUN, "a"))


def test_effective_permission_of_explicit_deny() -> None:
    assert effective_permission(user(), exp(("user", "7", Permission.DENY))) is Permission.DENY


def test_passwords_and_tokens() -> None:
    stored = hashing.hash_password("correct horse")
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert hashing.verify_password(stored, "correct horse")
    assert not hashing.verify_password(stored, "wrong")
    assert not hashing.verify_password("not-a-hash", "x")
    token, token_id, digest = hashing.new_token()
    parsed = hashing.parse_token(token)
    assert parsed is not None and parsed[0] == token_id
    assert hashing.token_matches(digest, parsed[1])
    changed = parsed[1][:-1] + ("B" if parsed[1].endswith("A") else "A")  # always differs
    assert not hashing.token_matches(digest, changed)
    assert hashing.parse_token("Bearer-ish garbage") is None


def test_token_record_expiry_and_revocation() -> None:
    rec = TokenRecord("t1", 1, "0" * 64, expires_at=1000)
    rec.check_usable(now_ms=999)
    with pytest.raises(InvalidToken):
        rec.check_usable(now_ms=1000)
    with pytest.raises(InvalidToken):
        TokenRecord("t1", 1, "0" * 64, revoked=True).check_usable()
    with pytest.raises(ValueError):
        TokenRecord("", 1, "short")


def test_role_of_counts_an_open_default_workspace() -> None:
    assert DEFAULT_WORKSPACE == entities.DEFAULT_WORKSPACE  # the gateway's and the stores'
    assert role_of(user(), "default", OPEN) is TeamRole.MEMBER
    assert role_of(user(), "default", CLOSED) is None
    assert role_of(user(), "a", OPEN) is None
    assert role_of(user(teams={"default": TeamRole.MANAGER}), "default", OPEN) \
        is TeamRole.MANAGER
    assert Policy().default_workspace_open is False  # deny by default; the server opens it
    # Searches filter on the same principals the check matches grants against.
    assert Principal("team", "default") in principals_of(user(), OPEN)
    assert Principal("team", "default") not in principals_of(user(), CLOSED)


TOKEN_A = TokenScope(workspace="team-a")
REFUSALS = [
    # (who, action, kind, workspace, message)
    (user(), C, EXP, "team-a", "u7 may not create experiments in workspace team-a"),
    (user(), C, ResourceKind.REGISTERED_MODEL, "default",
     "u7 may not create registered models in workspace default"),
    (user(), U, ResourceKind.RUN, "team-a", "u7 may not update this run in workspace team-a"),
    (user(), D, ResourceKind.REGISTERED_MODEL, "team-a",
     "u7 may not delete this registered model in workspace team-a"),
    (user(), R, ResourceKind.LOGGED_MODEL, "team-a",
     "u7 may not read this logged model in workspace team-a"),
    (user(), M, ResourceKind.GRANT_TARGET, "team-a",
     "u7 may not manage this experiment or registered model in workspace team-a"),
    (user(), C, ResourceKind.WORKSPACE, "team-a",
     "u7 may not create anything in workspace team-a"),
    (user(), M, ResourceKind.WORKSPACE, "team-a", "u7 may not manage workspace team-a"),
    (user(), R, ResourceKind.SERVER, "default",
     "u7 may not read this: it is for administrators"),
    (None, R, EXP, "team-a",
     "an anonymous caller may not read this experiment in workspace team-a"),
    (user(scope=TokenScope(read_only=True)), U, ResourceKind.RUN, "team-a",
     "u7 may not update this run in workspace team-a (the token is read-only)"),
    (user(scope=TokenScope(read_only=True)), R, ResourceKind.RUN, "team-a",
     "u7 may not read this run in workspace team-a"),
    (user(scope=TOKEN_A), C, EXP, "team-b",
     "u7 may not create experiments in workspace team-b (the token is for workspace team-a)"),
    (user(scope=TOKEN_A), C, EXP, "team-a", "u7 may not create experiments in workspace team-a"),
]


@pytest.mark.parametrize(("ident", "action", "kind", "workspace", "message"), REFUSALS,
                         ids=[r[4] for r in REFUSALS])
def test_refusal_says_what_and_where(ident: Identity | None, action: Action,
                                     kind: ResourceKind, workspace: str, message: str) -> None:
    assert refusal(ident, action, kind, workspace) == message
