"""``mlgate import --auth-db``: stock basic-auth's users, roles and permissions, written by
MLflow's own auth store (at its newest revision, and at a pre-roles one through its own
migrations), imported, then used against a running mlgate with ``--auth``: the stock
passwords log in, the permissions hold, and nothing is opened that stock kept closed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from conftest import MLGATE_START_TIMEOUT, free_port, mlgate_command, start_server, stop_server
from test_import import mlgate_import

# Stock's auth migrations run through Alembic, which warns about stock's config file.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning:alembic.*")]

API = "/api/2.0/mlflow"


@dataclass
class Source:
    tracking: str
    secret: str  # experiment ids
    open: str


def _tracking(workdir: Path) -> Source:
    from mlflow import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    secret = client.create_experiment("secret", artifact_location=str(workdir / "art" / "s"))
    opened = client.create_experiment("open", artifact_location=str(workdir / "art" / "o"))
    client.create_registered_model("model-a")
    return Source(uri, secret, opened)


def _auth_store(uri: str) -> object:
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(uri)
    return store


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return _tracking(tmp_path_factory.mktemp("stock-tracking"))


def _get(url: str, user: str, password: str, experiment_id: str) -> int:
    return requests.get(f"{url}{API}/experiments/get", params={"experiment_id": experiment_id},
                        auth=(user, password), timeout=10).status_code


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    servers = []

    def start(backend: str, *extra: str) -> str:
        port = free_port()
        server = start_server(mlgate_command(port, tmp_path, "--auth", *extra,
                                             backend_store_uri=backend),
                              f"http://127.0.0.1:{port}", tmp_path,
                              timeout=MLGATE_START_TIMEOUT, name="mlgate")
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        stop_server(server)


def _password_hash(db: Path, username: str) -> str:
    from backends.metadata.dialects.sqlite import SqliteMetadataStore

    async def read() -> str:
        async with SqliteMetadataStore(str(db)) as store:
            return (await store.get_user(username)).password_hash

    return asyncio.run(read())


def test_roles_database_logs_in_and_grants_hold(source: Source, tmp_path: Path,
                                                serve: object) -> None:
    auth_uri = f"sqlite:///{tmp_path / 'basic_auth.db'}"
    stock = _auth_store(auth_uri)
    alice = stock.create_user("alice", "alice-password-1")  # type: ignore[attr-defined]
    stock.create_user("bob", "bob-password-1")  # type: ignore[attr-defined]
    stock.create_user("carol", "carol-password-1", is_admin=True)  # type: ignore[attr-defined]
    readers = stock.create_role("readers", "default")  # type: ignore[attr-defined]
    stock.add_role_permission(readers.id, "experiment", source.secret, "READ")  # type: ignore[attr-defined]
    stock.add_role_permission(readers.id, "prompt", "model-a", "EDIT")  # type: ignore[attr-defined]
    stock.add_role_permission(readers.id, "scorer", "*", "READ")  # type: ignore[attr-defined]
    stock.assign_role_to_user(alice.id, readers.id)  # type: ignore[attr-defined]
    team = stock.create_role("team-x-users", "team-x")  # type: ignore[attr-defined]
    stock.add_role_permission(team.id, "workspace", "*", "USE")  # type: ignore[attr-defined]
    stock.assign_role_to_user(alice.id, team.id)  # type: ignore[attr-defined]

    dest = tmp_path / "mlgate.db"
    backend = f"sqlite:///{dest}"
    plan = json.loads(mlgate_import(source.tracking, backend, tmp_path / "a", "--auth-db",
                                    auth_uri, "--dry-run", "--json").stdout)["auth"]
    assert plan["source"] == {"users": 3, "roles": 2, "role permissions": 3,
                              "role assignments": 2, "skipped": 1}
    assert not dest.exists()
    report = json.loads(mlgate_import(source.tracking, backend, tmp_path / "a", "--auth-db",
                                      auth_uri, "--json").stdout)
    assert report["auth"]["added"] == {"users": 3, "workspaces": 1, "roles": 2,
                                       "role permissions": 3, "role assignments": 2}
    assert report["auth"]["skipped"] == ["scorer '*' READ (role 'readers')"]
    assert _password_hash(dest, "alice").startswith("scrypt:")

    url = serve(backend)  # type: ignore[operator]
    assert _get(url, "alice", "alice-password-1", source.secret) == 200
    assert _get(url, "alice", "alice-password-1", source.open) == 403
    assert _get(url, "alice", "wrong-password", source.secret) == 401
    assert _get(url, "bob", "bob-password-1", source.secret) == 403
    assert _get(url, "carol", "carol-password-1", source.open) == 200
    # The prompt permission became one on the registered model of that name.
    update = requests.patch(f"{url}{API}/registered-models/update", timeout=10,
                            auth=("alice", "alice-password-1"),
                            json={"name": "model-a", "description": "edited"})
    assert update.status_code == 200, update.text
    # The first login replaced Werkzeug's hash by Argon2id; the password still works.
    assert _password_hash(dest, "alice").startswith("$argon2id$")
    assert _get(url, "alice", "alice-password-1", source.secret) == 200

    again = json.loads(mlgate_import(source.tracking, backend, tmp_path / "a", "--auth-db",
                                     auth_uri, "--json").stdout)["auth"]
    assert set(again["added"].values()) == {0}
    # Each has logged in here, so each hash is Argon2id now: mlgate's is kept.
    assert again["kept_users"] == ["alice", "bob", "carol"]


def _legacy_database(path: Path) -> str:
    """An auth database at revision 2ed73881770d (before roles), made by stock's own
    migrations, with rows as that MLflow wrote them."""
    from mlflow.server.auth.db.utils import migrate
    from sqlalchemy import create_engine
    from werkzeug.security import generate_password_hash

    uri = f"sqlite:///{path}"
    engine = create_engine(uri)
    migrate(engine, "2ed73881770d")
    engine.dispose()
    with sqlite3.connect(path) as db:
        for uid, name in ((1, "dave"), (2, "erin"), (3, "fay")):
            db.execute("INSERT INTO users (id, username, password_hash, is_admin)"
                       " VALUES (?, ?, ?, 0)",
                       (uid, name, generate_password_hash(f"{name}-pw", "pbkdf2:sha256")))
    return uri


def test_legacy_database_keeps_no_permissions_closed(source: Source, tmp_path: Path,
                                                     serve: object) -> None:
    auth_path = tmp_path / "basic_auth.db"
    auth_uri = _legacy_database(auth_path)
    with sqlite3.connect(auth_path) as db:
        db.executemany(
            "INSERT INTO experiment_permissions (experiment_id, user_id, permission)"
            " VALUES (?, ?, ?)",
            [(source.secret, 1, "READ"), (source.open, 2, "NO_PERMISSIONS")])
        db.execute("INSERT INTO workspace_permissions (workspace, user_id, permission)"
                   " VALUES ('default', 3, 'EDIT')")
    backend = f"sqlite:///{tmp_path / 'mlgate.db'}"
    report = json.loads(mlgate_import(source.tracking, backend, tmp_path / "a", "--auth-db",
                                      auth_uri, "--json").stdout)["auth"]
    assert report["revision"] == "2ed73881770d"
    assert report["added"]["roles"] == 3  # one __user_<id>__ role per user, as stock's upgrade

    url = serve(backend, "--auth-member-default", "READ")  # type: ignore[operator]
    assert _get(url, "dave", "dave-pw", source.secret) == 200
    assert _get(url, "dave", "dave-pw", source.open) == 200  # the members' default
    # Stock's explicit NO_PERMISSIONS beat the default; it still does here.
    assert _get(url, "erin", "erin-pw", source.open) == 403
    assert _get(url, "erin", "erin-pw", source.secret) == 200
    # A workspace EDIT fans out to EDIT on every experiment, as stock's upgrade does.
    rename = requests.post(f"{url}{API}/experiments/update", auth=("fay", "fay-pw"),
                           json={"experiment_id": source.secret, "new_name": "renamed"},
                           timeout=10)
    assert rename.status_code == 200, rename.text


def test_deny_mlgate_cannot_express_is_refused(source: Source, tmp_path: Path) -> None:
    auth_uri = f"sqlite:///{tmp_path / 'basic_auth.db'}"
    stock = _auth_store(auth_uri)
    user = stock.create_user("gus", "gus-password-1")  # type: ignore[attr-defined]
    role = stock.create_role("no-runs", "default")  # type: ignore[attr-defined]
    stock.add_role_permission(role.id, "run", "*", "DENY")  # type: ignore[attr-defined]
    stock.assign_role_to_user(user.id, role.id)  # type: ignore[attr-defined]
    dest = tmp_path / "mlgate.db"
    done = mlgate_import(source.tracking, f"sqlite:///{dest}", tmp_path / "a", "--auth-db",
                         auth_uri, check=False)
    assert done.returncode != 0
    assert "run '*' DENY (role 'no-runs')" in done.stderr
    assert not dest.exists()  # refused before anything was written


def test_unknown_auth_revision_is_refused(source: Source, tmp_path: Path) -> None:
    path = tmp_path / "basic_auth.db"
    _auth_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version_auth SET version_num = 'ffffffffffff'")
    done = mlgate_import(source.tracking, f"sqlite:///{tmp_path / 'mlgate.db'}",
                         tmp_path / "a", "--auth-db", f"sqlite:///{path}", check=False)
    assert done.returncode != 0 and "'ffffffffffff'" in done.stderr


def test_an_untrusted_database_cannot_raise_anyone(source: Source, tmp_path: Path) -> None:
    """A user mlgate already has gets none of the source's roles; a hash at a cost stock never
    chose never verifies; names mlgate would refuse are skipped."""
    import subprocess
    import sys

    from test_import import REPO

    dest = tmp_path / "mlgate.db"
    backend = f"sqlite:///{dest}"
    subprocess.run([sys.executable, "-m", "gateway", "users", "create", "b1",
                    "--password-stdin", "--backend-store-uri", backend], input="mlgate-password-1\n",
                   check=True, cwd=REPO, capture_output=True, text=True, timeout=60)
    auth_path = tmp_path / "basic_auth.db"
    stock = _auth_store(f"sqlite:///{auth_path}")
    b1 = stock.create_user("b1", "stock-password-1")  # type: ignore[attr-defined]
    stock.create_user("slow", "slow-password-1")  # type: ignore[attr-defined]
    stock.create_user("evil-admin", "evil-password-1")  # type: ignore[attr-defined]
    managers = stock.create_role("managers", "team-a")  # type: ignore[attr-defined]
    stock.add_role_permission(managers.id, "workspace", "*", "MANAGE")  # type: ignore[attr-defined]
    stock.assign_role_to_user(b1.id, managers.id)  # type: ignore[attr-defined]
    shadow = stock.create_role("shadow", "workspaces")  # type: ignore[attr-defined]
    stock.add_role_permission(shadow.id, "workspace", "*", "USE")  # type: ignore[attr-defined]
    with sqlite3.connect(auth_path) as db:
        db.execute("UPDATE users SET password_hash = 'pbkdf2:sha256:20000000$salt$00'"
                   " WHERE username = 'slow'")
        db.execute("UPDATE users SET username = 'evil' || char(10) || 'admin'"
                   " WHERE username = 'evil-admin'")
    report = json.loads(mlgate_import(source.tracking, backend, tmp_path / "a", "--auth-db",
                                      f"sqlite:///{auth_path}", "--json").stdout)["auth"]
    assert report["kept_users"] == ["b1"]
    assert report["withheld_roles"] == ["b1 → managers (team-a)"]
    assert report["unusable_hashes"] == ["slow"]
    assert "user 'evil\\nadmin': not a valid user name" in report["skipped"]
    assert ("role 'shadow': workspace 'workspaces' is not a valid team name"
            in report["skipped"])

    from backends.metadata.dialects.sqlite import SqliteMetadataStore

    async def state() -> tuple[list[str], list[str], str]:
        async with SqliteMetadataStore(str(dest)) as store:
            user = await store.get_user("b1")
            return ([r.name for r in await store.list_user_roles(user.user_id)],
                    [u.username for u in await store.list_users()], user.password_hash)

    roles, usernames, b1_hash = asyncio.run(state())
    assert roles == [] and "evil\nadmin" not in usernames and "slow" in usernames
    assert b1_hash.startswith("$argon2id$")  # mlgate's own password stays
