"""Issue 25's scale-out, as an operator runs it: two ``mlgate serve`` replicas on one
PostgreSQL database and one S3 bucket (moto) behind HAProxy (tests/replicas/cluster.py).

- the real mlflow client's session through the balancer: runs, params, metrics, a dataset,
  artifacts, search, a logged scikit-learn model, the registry with aliases;
- load from a few client threads while one replica gets SIGTERM and starts again: no call
  fails and no acknowledged write is lost; a multipart upload created on one replica, its
  parts sent to the other, completed on the restarted one, with every replica sweeping
  for crashed uploads several times a second meanwhile;
- a token revoked, a grant removed, a member removed through one replica: refused by the
  other one second later.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from cluster import (
    ADMIN,
    ADMIN_PASSWORD,
    Balancer,
    Replica,
    basic,
    call,
    replicas,
    start_all,
    stop_all,
)
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from object_stores import ObjectServer, new_bucket
from pgtools import PgDatabases

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from models_session import MODEL_NAME, features, run_models_session
from session import check_session, run_session, tracking_uri

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
API, API3, MLGATE = "/api/2.0/mlflow", "/api/3.0/mlflow", "/mlgate/v1"
ARTIFACTS = "/api/2.0/mlflow-artifacts"
ADMIN_HEADERS = basic(ADMIN, ADMIN_PASSWORD)
USER_PASSWORD = "user-password-123"
LOAD_THREADS = 3


class Cluster:
    def __init__(self, replicas: list[Replica], balancer: Balancer) -> None:
        self.replicas = replicas
        self.balancer = balancer


@pytest.fixture(scope="module")
def cluster(pg_databases: PgDatabases, moto_s3_server: ObjectServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("replicas")
    dsn = pg_databases.create("replicas", migrated=False)
    buckets = new_bucket(moto_s3_server)
    loop = asyncio.new_event_loop()
    bucket = loop.run_until_complete(buckets.__anext__())
    started = replicas(dsn, f"s3://{bucket}/mlartifacts", workdir, moto_s3_server.env)
    balancer = Balancer(started, workdir)
    try:
        start_all(started)
        balancer.start()
        yield Cluster(started, balancer)
    finally:
        balancer.stop()
        stop_all(started)
        pg_databases.drop(dsn)
        with pytest.raises(StopAsyncIteration):
            loop.run_until_complete(buckets.__anext__())
        loop.close()


@pytest.fixture
def as_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mlflow client signs in as the admin."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)


def test_client_session_through_the_balancer(cluster: Cluster, as_admin: None,
                                             tmp_path: Path) -> None:
    lb = cluster.balancer
    before = {r.name: lb.served_by(r.name) for r in cluster.replicas}
    result = run_session(lb.url, tmp_path / "session")
    check_session(result, tmp_path / "check")
    models = run_models_session(lb.url)
    with tracking_uri(lb.url):
        loaded = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
        np.testing.assert_array_equal(loaded.predict(features()[0]), models.expected)
        assert MlflowClient().get_model_version_by_alias(MODEL_NAME, "backup").version == "2"
    # Round-robin: both replicas did their share.
    for replica in cluster.replicas:
        assert lb.served_by(replica.name) - before[replica.name] > 20
    assert lb.answers("5xx") == 0


def _mpu_create(replica: Replica, directory: str, num_parts: int) -> dict[str, Any]:
    reply = call(replica.port, "POST", f"{ARTIFACTS}/mpu/create/{directory}",
                 ADMIN_HEADERS, {"path": "/home/me/big.bin", "num_parts": num_parts})
    assert reply.status == 200, reply
    return dict(reply.body)


def _mpu_part(replica: Replica, credential: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The part sent to ``replica`` whichever replica handed out its URL."""
    url = urllib.parse.urlsplit(credential["url"])
    reply = call(replica.port, "PUT", f"{url.path}?{url.query}", credential["headers"], data)
    assert reply.status == 200, reply
    return {"part_number": credential["part_number"], "etag": reply.headers["etag"]}


def test_load_and_a_multipart_upload_while_a_replica_restarts(
        cluster: Cluster, as_admin: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lb = cluster.balancer
    first, second = cluster.replicas
    with tracking_uri(lb.url):
        client = MlflowClient()
        experiment_id = client.create_experiment(f"load-{time.time_ns()}")
        run_id = client.create_run(experiment_id).info.run_id

    # A multipart upload begun on the first replica, parts sent to the second.
    directory = f"{experiment_id}/{run_id}/artifacts/data"
    parts = [os.urandom(5 * MIB), os.urandom(100_000)]
    created = _mpu_create(first, directory, len(parts))
    sent = [_mpu_part(second, cred, data) for cred, data in zip(created["credentials"], parts)]

    acked: dict[int, list[int]] = {i: [] for i in range(LOAD_THREADS)}
    failures: list[BaseException] = []
    stop = threading.Event()

    def log_metrics(thread: int) -> None:
        worker = MlflowClient(lb.url)
        step = 0
        while not stop.is_set():
            try:
                worker.log_batch(run_id, metrics=[
                    Metric(f"load{thread}", float(step), int(time.time() * 1000), step)])
            except Exception as exc:  # noqa: BLE001  # any failed call fails the test
                failures.append(exc)
                return
            acked[thread].append(step)
            step += 1

    errors_before, retries_before = lb.answers("5xx"), lb.retries()
    with tracking_uri(lb.url):
        threads = [threading.Thread(target=log_metrics, args=(i,)) for i in range(LOAD_THREADS)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            assert first.terminate() == 0, first.output()  # returns once it has exited
            first.start()
            lb.wait_up({first.name})
            restarted_at = lb.served_by(first.name)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert not failures, failures
    assert lb.answers("5xx") == errors_before
    # Not one connection refused: the balancer had taken the replica out while it drained.
    assert lb.retries() == retries_before
    assert lb.served_by(first.name) > restarted_at, "the restarted replica took no load"

    # Every acknowledged row is stored.
    with tracking_uri(lb.url):
        client = MlflowClient()
        for thread, steps in acked.items():
            assert len(steps) > 10, {t: len(s) for t, s in acked.items()}
            history = client.get_metric_history(run_id, f"load{thread}")
            assert sorted({int(m.step) for m in history}) == steps

    # Completed on the restarted replica, a process that never saw the upload begin; the
    # sweeps of all three processes (every 0.3 s) left it alone.
    reply = call(first.port, "POST", f"{ARTIFACTS}/mpu/complete/{directory}", ADMIN_HEADERS,
                 {"path": "/home/me/big.bin", "upload_id": created["upload_id"], "parts": sent})
    assert reply.status == 200, reply
    reply = call(lb.port, "GET", f"{ARTIFACTS}/artifacts/{directory}/big.bin", ADMIN_HEADERS)
    assert reply.status == 200
    assert hashlib.sha256(reply.body).digest() == hashlib.sha256(b"".join(parts)).digest()

    # The client's own multipart upload through the balancer: its parts go round-robin.
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * MIB))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * MIB))
    big = tmp_path / "client.bin"
    big.write_bytes(os.urandom(10 * MIB + 7))
    with tracking_uri(lb.url):
        MlflowClient().log_artifact(run_id, str(big), "client")
        back = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="client/client.bin", dst_path=str(tmp_path / "dl"))
    assert Path(back).read_bytes() == big.read_bytes()


def test_auth_changes_on_one_replica_refused_by_the_other_a_second_later(
        cluster: Cluster) -> None:
    a, b = cluster.replicas

    def ok(method: str, path: str, body: Any = None, headers: dict[str, str] = ADMIN_HEADERS,
           workspace: str | None = None) -> Any:
        reply = call(a.port, method, path, headers, body, workspace)
        assert reply.status in (200, 201), (method, path, reply)
        return reply.body

    team = f"team-{time.time_ns()}"
    ok("POST", f"{API3}/workspaces", {"name": team})
    for user in ("u1", "u2"):
        ok("POST", f"{API}/users/create", {"username": user, "password": USER_PASSWORD})
        ok("POST", f"{MLGATE}/teams/{team}/members", {"username": user, "role": "member"})
    experiment = ok("POST", f"{API}/experiments/create", {"name": "shared"},
                    workspace=team)["experiment_id"]
    for user in ("u1", "u2"):
        ok("POST", f"{API3}/users/permissions/grant", {
            "username": user, "resource_type": "experiment", "resource_id": experiment,
            "permission": "READ"}, workspace=team)
    u1, u2 = basic("u1", USER_PASSWORD), basic("u2", USER_PASSWORD)
    issued = ok("POST", f"{MLGATE}/tokens", {"name": "ci"}, headers=u1)
    bearer = {"Authorization": f"Bearer {issued['token']}"}

    def status_on_b(headers: dict[str, str]) -> int:
        return call(b.port, "GET", f"{API}/experiments/get?experiment_id={experiment}",
                    headers, workspace=team).status

    def one_second_after(change: Any) -> float:
        """Run ``change`` on A; return when a second has passed since it answered."""
        change()
        answered = time.monotonic()
        time.sleep(max(0.0, answered + 1.0 - time.monotonic()))
        return answered

    # B has answered (and cached) each credential's access before each change.
    assert {status_on_b(h) for h in (u1, u2, bearer)} == {200}
    one_second_after(lambda: ok("DELETE", f"{MLGATE}/tokens/{issued['info']['token_id']}",
                                headers=u1))
    assert status_on_b(bearer) == 401
    assert status_on_b(u1) == 200

    one_second_after(lambda: ok("POST", f"{API3}/users/permissions/revoke", {
        "username": "u2", "resource_type": "experiment", "resource_id": experiment,
        "permission": "READ"}, workspace=team))
    assert status_on_b(u2) in (403, 404)

    one_second_after(lambda: ok("DELETE", f"{MLGATE}/teams/{team}/members/u1"))
    assert status_on_b(u1) in (403, 404)
