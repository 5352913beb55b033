"""What a user can do to a server with ``--auth`` through values its database cannot store:
on every database, one request never holds up the audit log, never gets a retryable 503 for
a value no retry can store, and an error never names the database or its tables.

MariaDB is where these differ: its TEXT column holds 65,535 bytes (the audit log's columns
are TEXT), and a statement over ``max_allowed_packet`` (16 MiB by default) closes the
connection. SQLite and PostgreSQL have neither limit.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from conftest import MlgateFactory, ServerProcess
from mytools import ON_EVERY_DATABASE

pytestmark = ON_EVERY_DATABASE

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-123"
BOB, BOB_PASSWORD = "bob", "bob-password-123"
API = "/api/2.0/mlflow"
# 17,000 characters of four bytes: 68,000 bytes, over a MariaDB TEXT column's 65,535.
BEYOND_TEXT = "\U0001F600" * 17_000


class Client:
    def __init__(self, server: ServerProcess, user: str, password: str) -> None:
        self.url, self.auth = server.url, (user, password)

    def call(self, method: str, path: str, body: Any = None, *,
             params: dict[str, Any] | None = None) -> requests.Response:
        return requests.request(method, self.url + path, json=body, params=params,
                                auth=self.auth, timeout=120)


@pytest.fixture
def server(mlgate_factory: MlgateFactory) -> ServerProcess:
    server = mlgate_factory("--auth", "--admin-username", ADMIN,
                            env={"MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    r = Client(server, ADMIN, ADMIN_PASSWORD).call(
        "POST", f"{API}/users/create", {"username": BOB, "password": BOB_PASSWORD})
    assert r.status_code == 200, r.text
    return server


def test_a_name_beyond_a_text_column_does_not_hold_up_the_audit_log(
        server: ServerProcess) -> None:
    admin = Client(server, ADMIN, ADMIN_PASSWORD)
    bob = Client(server, BOB, BOB_PASSWORD)
    # Bob may not touch the model (there is none): the refusal is audited with its name.
    r = bob.call("POST", f"{API}/registered-models/set-tag",
                 {"name": BEYOND_TEXT, "key": "k", "value": "v"})
    assert r.status_code in (403, 404), r.text
    time.sleep(0.5)  # the audit writer lingers 0.25 s before a batch
    r = admin.call("POST", f"{API}/experiments/create", {"name": "after"})
    assert r.status_code == 200, r.text
    r = admin.call("GET", "/mlgate/v1/audit", params={"username": ADMIN, "limit": 100})
    assert r.status_code == 200, r.text
    actions = [rec["action"] for rec in r.json()["records"]]
    assert "POST /experiments/create" in actions


def test_a_value_the_database_cannot_hold_does_not_name_the_database(
        server: ServerProcess) -> None:
    bob = Client(server, BOB, BOB_PASSWORD)
    exp = bob.call("POST", f"{API}/experiments/create", {"name": "mine"})
    assert exp.status_code == 200, exp.text
    r = bob.call("POST", f"{API}/runs/create",
                 {"experiment_id": exp.json()["experiment_id"], "run_name": BEYOND_TEXT})
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        message = r.json()["message"]
        database = server.proc.args[server.proc.args.index(  # type: ignore[union-attr]
            "--backend-store-uri") + 1].rsplit("/", 1)[-1]
        assert database not in message
        assert "`runs`" not in message and "run_name" not in message


def test_a_value_beyond_the_packet_limit_is_not_a_retryable_503(
        server: ServerProcess) -> None:
    bob = Client(server, BOB, BOB_PASSWORD)
    r = bob.call("POST", f"{API}/registered-models/create",
                 {"name": "big", "description": "a" * 17_000_000})
    # 503 tells the client to retry, and the MLflow client does: no retry can store it.
    assert r.status_code != 503, r.text[:300]
    assert r.status_code < 500, r.text[:300]
