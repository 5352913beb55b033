"""``mlgate backup``, ``restore`` and ``verify`` against running servers seeded by the real
mlflow client: a restored copy answers as the original did, a backup taken while metrics
are being logged is consistent, and verify finds a flipped byte, a deleted artifact and an
orphaned one. SQLite and PostgreSQL, artifacts on local disk and on S3 (moto)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    MlgateFactory,
    ServerProcess,
    free_port,
    mlgate_command,
    start_server,
    stop_server,
)
from object_stores import AZURITE_ACCOUNT, ObjectServer, _s3_client

from backends.metadata.dialects.sqlite import SqliteMetadataStore
from backends.registry import open_metadata_store

# The e2e sessions (tests/e2e/) seed the stores backed up here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from models_session import MODEL_NAME, run_models_session
from session import run_session

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _call(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data,
                                 headers={"Content-Type": "application/json"},
                                 method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _mlgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    environ.update(env or {}, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--quiet", "--json"],
                          check=False, capture_output=True, text=True, env=environ,
                          timeout=240)


class _Logger(threading.Thread):
    """Logs metric ``hot`` at steps 0, 1, 2... until stopped, as a training loop would."""

    def __init__(self, url: str, run_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.run_id, self.steps = url, run_id, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            _call(self.url, "runs/log-metric", {
                "run_id": self.run_id, "key": "hot", "value": self.steps * 0.5,
                "timestamp": 1_700_000_000_000 + self.steps, "step": self.steps})
            self.steps += 1


def _parity(url: str, run_ids: list[str], experiment_id: str) -> dict[str, Any]:
    """What the restored server must answer exactly as the original does."""
    out: dict[str, Any] = {}
    for run_id in run_ids:
        out[f"get {run_id}"] = _call(url, f"runs/get?run_id={run_id}")
        for key in ("accuracy", "loss"):
            out[f"history {run_id} {key}"] = _call(
                url, f"metrics/get-history?run_id={run_id}&metric_key={key}")
    out["search"] = _call(url, "runs/search", {"experiment_ids": [experiment_id],
                                               "max_results": 100})
    out["registered model"] = _call(url, f"registered-models/get?name={MODEL_NAME}")
    out["versions"] = _call(url, f"model-versions/search?filter=name%3D%27{MODEL_NAME}%27")
    return out


async def _tamper_s3(server: ObjectServer, bucket: str, prefix: str, flip: str, delete: str,
                     orphan: str) -> None:
    async with await _s3_client(server) as s3:
        obj = await s3.get_object(Bucket=bucket, Key=f"{prefix}/{flip}")
        data = bytearray(await obj["Body"].read())
        data[0] ^= 0xFF
        # The stored SHA-256 (object metadata) stays: bit rot does not update it either.
        await s3.put_object(Bucket=bucket, Key=f"{prefix}/{flip}", Body=bytes(data),
                            Metadata=obj["Metadata"])
        await s3.delete_object(Bucket=bucket, Key=f"{prefix}/{delete}")
        await s3.put_object(Bucket=bucket, Key=f"{prefix}/{orphan}", Body=b"nobody's")


async def _tamper_azure(server: ObjectServer, container: str, prefix: str, flip: str,
                        delete: str, orphan: str) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(server.connection_string) as svc:
        blobs = svc.get_container_client(container)
        blob = blobs.get_blob_client(f"{prefix}/{flip}")
        download = await blob.download_blob()
        data = bytearray(await download.readall())
        data[0] ^= 0xFF
        await blob.upload_blob(bytes(data), overwrite=True,
                               metadata=download.properties.metadata)
        await blobs.delete_blob(f"{prefix}/{delete}")
        await blobs.upload_blob(f"{prefix}/{orphan}", b"nobody's")


@pytest.mark.parametrize("artifacts", ["local", "s3", "azure"])
def test_backup_restore_verify(artifacts: str, mlgate_factory: MlgateFactory,
                               request: pytest.FixtureRequest,
                               tmp_path: Path) -> None:
    env: dict[str, str] = {}
    if artifacts == "azure":
        if request.node.callspec.params["mlgate_factory"] == "postgres":
            pytest.skip("Azure is covered on SQLite; the dialect changes nothing there")
        server: ObjectServer = request.getfixturevalue("azurite_server")
        container: str = request.getfixturevalue("azurite_container")
        env = dict(server.env)
        base = f"wasbs://{container}@{AZURITE_ACCOUNT}.blob.core.windows.net"
        original_dest, restored_dest = f"{base}/original", f"{base}/restored"
        backup_dest = f"{base}/backups"
        extra: tuple[str, ...] = ("--artifacts-destination", original_dest)
    elif artifacts == "s3":
        server = request.getfixturevalue("moto_s3_server")
        bucket: str = request.getfixturevalue("moto_bucket")
        env = dict(server.env)
        original_dest, restored_dest = f"s3://{bucket}/original", f"s3://{bucket}/restored"
        backup_dest = f"s3://{bucket}/backups"
        extra = ("--artifacts-destination", original_dest)
    else:
        extra = ()
        backup_dest = str(tmp_path / "backups")
    original = mlgate_factory(*extra, env=env)
    if artifacts == "local":
        original_dest = str(original.workdir / "mlartifacts")
    db = _backend_uri(original, mlgate_factory)
    session = run_session(original.url, tmp_path / "client")
    models = run_models_session(original.url)
    store = ("--backend-store-uri", db, "--artifacts-destination", original_dest)

    # A backup taken while a client logs metrics to another run.
    hot = _call(original.url, "runs/create", {"experiment_id": "0"})["run"]["info"]["run_id"]
    logger = _Logger(original.url, hot)
    logger.start()
    while logger.steps < 20:
        time.sleep(0.01)
    started = time.monotonic()
    done = _mlgate("backup", backup_dest, "--with-artifacts", *store, env=env)
    backup_seconds = time.monotonic() - started
    logger.stop.set()
    logger.join()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 0 < report["copied"] <= report["artifacts"]
    assert logger.steps > 20  # the client kept logging while the backup ran

    # A second backup copies only the artifact uploaded since the first.
    extra_path = f"{session.experiment_id}/{session.run_id}/artifacts/later.txt"
    put = urllib.request.Request(
        f"{original.url}/api/2.0/mlflow-artifacts/artifacts/{extra_path}",
        data=b"logged after the first backup", method="PUT")
    urllib.request.urlopen(put, timeout=30).close()
    again = json.loads(_mlgate("backup", backup_dest, "--with-artifacts", *store,
                               env=env).stdout)
    assert (again["copied"], again["artifacts"]) == (1, report["artifacts"] + 1)

    # Restore into a fresh store and destination, then serve it.
    workdir = tmp_path / "restored"
    workdir.mkdir()
    if db.startswith("sqlite"):
        restored_db = f"sqlite:///{workdir / 'mlgate.db'}"
    else:
        restored_db = request.getfixturevalue("pg_databases").create("restored", migrated=False)
    if artifacts == "local":
        restored_dest = str(workdir / "mlartifacts")
    restored_store = ("--backend-store-uri", restored_db,
                      "--artifacts-destination", restored_dest)
    done = _mlgate("restore", backup_dest, "--backup-id", report["id"], *restored_store,
                   env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["restored"] == report["artifacts"]
    # Into a store that now holds data, only with --force.
    refused = _mlgate("restore", backup_dest, *restored_store, env=env)
    assert refused.returncode != 0 and "--force" in refused.stderr
    other = (f"sqlite:///{tmp_path / 'other.db'}" if db.startswith("postgresql")
             else request.getfixturevalue("pg_databases").create("other", migrated=False))
    across = _mlgate("restore", backup_dest, "--metadata-only", "--backend-store-uri", other,
                     "--artifacts-destination", restored_dest, env=env)
    assert across.returncode != 0 and "restore it into a" in across.stderr

    port = free_port()
    restored = start_server(
        mlgate_command(port, workdir, "--artifacts-destination", restored_dest,
                       backend_store_uri=restored_db),
        f"http://127.0.0.1:{port}", workdir, timeout=60, env=env, name="restored")
    try:
        runs = [session.run_id, models.run_id]
        assert _parity(restored.url, runs, session.experiment_id) == _parity(
            original.url, runs, session.experiment_id)
        # The hot run's latest value is the last point of its history: one snapshot.
        run = _call(restored.url, f"runs/get?run_id={hot}")["run"]
        latest = {m["key"]: m for m in run["data"]["metrics"]}["hot"]
        history = _call(restored.url, f"metrics/get-history?run_id={hot}&metric_key=hot")
        points = history["metrics"]
        assert len(points) >= 20
        assert sorted(p["step"] for p in points) == list(range(len(points)))
        assert latest["step"] == len(points) - 1 and latest["value"] == points[-1]["value"]
        # Ids continue after the restored ones (PostgreSQL's identity sequences moved on).
        made = _call(restored.url, "experiments/create", {"name": "after restore"})
        assert int(made["experiment_id"]) > max(int(session.experiment_id), 2)
        _call(restored.url, "runs/set-tag", {"run_id": hot, "key": "k", "value": "v"})
        # A sample re-hashes part of the files.
        part = _mlgate("verify", "--sample", "0.3", "--seed", "1", *restored_store, env=env)
        assert part.returncode == 0, part.stdout + part.stderr
        assert 0 < json.loads(part.stdout)["checked"] < report["artifacts"]
        # The restored copy is clean.
        clean = _mlgate("verify", "--against", backup_dest, "--backup-id", report["id"],
                        *restored_store, env=env)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert json.loads(clean.stdout)["checked"] == report["artifacts"]
    finally:
        stop_server(restored)

    # Bit rot, a lost file and a stray one.
    flip = f"{session.experiment_id}/{session.run_id}/artifacts/reports/test_report.txt"
    delete = f"{session.experiment_id}/{session.run_id}/artifacts/summary.json"
    orphan = f"{session.experiment_id}/0123456789abcdef/artifacts/stray.txt"
    if artifacts == "s3":
        asyncio.run(_tamper_s3(server, bucket, "restored", flip, delete, orphan))
    elif artifacts == "azure":
        asyncio.run(_tamper_azure(server, container, "restored", flip, delete, orphan))
    else:
        root = Path(restored_dest)
        with open(root / flip, "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))
        (root / delete).unlink()
        (root / orphan).parent.mkdir(parents=True)
        (root / orphan).write_bytes(b"nobody's")
    found = _mlgate("verify", "--against", backup_dest, "--backup-id", report["id"],
                    *restored_store, env=env)
    assert found.returncode == 1, found.stdout + found.stderr
    findings = {(f["kind"], f["subject"]) for f in json.loads(found.stdout)["findings"]}
    assert findings == {("corrupt", flip), ("missing", delete), ("orphaned", orphan)}
    print(f"backup took {backup_seconds:.1f} s while {logger.steps} metrics were logged")


def _backend_uri(server: ServerProcess, factory: MlgateFactory) -> str:
    """The original server's database, as its command line names it."""
    args = server.proc.args
    assert isinstance(args, list)
    return str(args[args.index("--backend-store-uri") + 1])


def test_exported_members() -> None:
    import backends.backup

    assert backends.backup.__all__ == sorted(backends.backup.__all__)
    assert all(hasattr(backends.backup, name) for name in backends.backup.__all__)


class _NoBackups(SqliteMetadataStore):
    """A store backup knows nothing of (an SQLite store under another scheme)."""

    backup_format = None

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> Any:
        return super().from_uri("sqlite" + uri.removeprefix("nobackups"), **options)


async def test_a_store_backup_does_not_know_is_refused(tmp_path: Path) -> None:
    """Refused by name, not taken for one of the stores it knows."""
    from backends.backup import metadata, no_progress
    from backends.errors import InvalidArgument
    from backends.registry import register_metadata_scheme

    with contextlib.suppress(ValueError):  # registered by an earlier run in this process
        register_metadata_scheme("nobackups", f"{__name__}:_NoBackups")
    uri = f"nobackups:///{tmp_path / 'm.db'}"
    store = open_metadata_store(uri)
    await store.open()
    await store.aclose()
    with pytest.raises(InvalidArgument, match="not nobackups://"):
        await metadata.holds_data(uri)
    with pytest.raises(InvalidArgument, match="not nobackups://"):
        await metadata.dump(uri, tmp_path / "out", audit=True, progress=no_progress)


async def test_verify_reports_broken_references(tmp_path: Path) -> None:
    """Rows naming rows that do not exist, and a READY model without its folder."""
    import sqlite3

    from backends.artifacts.local import LocalArtifactStore
    from backends.backup import no_progress, verify
    from backends.registry import open_metadata_store
    from gateway.cli_backup import _locator
    from gateway.settings import Settings

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    store = open_metadata_store(uri)
    await store.open()
    run = await store.create_run("0", user_id="u", run_name="r", start_time=0)
    await store.aclose()
    run_id = run.info.run_id
    with sqlite3.connect(tmp_path / "m.db") as db:  # foreign keys are off here
        db.execute("INSERT INTO metric_points VALUES (999999, 1, 0, 1.0, 0)")
        db.execute("INSERT INTO registered_models VALUES ('default', 'm', 1, 1, NULL)")
        db.execute("INSERT INTO registered_model_aliases (workspace, name, alias, version)"
                   " VALUES ('default', 'm', 'champion', 7)")
        db.execute("INSERT INTO logged_models (model_id, experiment_id, name,"
                   " artifact_location, creation_timestamp_ms, last_updated_timestamp_ms,"
                   " status, source_run_id) VALUES ('m-1', 0, 'model',"
                   " 'mlflow-artifacts:/0/models/m-1/artifacts', 1, 1, 'READY', 'gone')")
        db.execute("UPDATE runs SET experiment_id = 4242 WHERE run_id = ?", (run_id,))
    async with LocalArtifactStore(str(tmp_path / "art")) as art:
        report = await verify(
            metadata_uri=uri, store=art, progress=no_progress,
            locate=_locator(Settings(artifacts_destination=str(tmp_path / "art"))))
    assert {(f.kind, f.subject, f.detail) for f in report.findings} == {
        ("inconsistent", run_id, "run's experiment does not exist"),
        ("inconsistent", "m-1", "logged model's source run does not exist"),
        ("inconsistent", "m@champion", "alias points at a version that does not exist"),
        ("inconsistent", "999999", "metric points' series does not exist"),
        ("missing", "0/models/m-1/artifacts", "artifact folder of logged model m-1"),
    }


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_restore_of_an_older_schema_migrates(dialect: str, tmp_path: Path,
                                                   pg_databases: Any) -> None:
    """A backup from an mlgate one schema version behind restores at its version, and the
    store migrates it on open."""
    import sqlite3

    import asyncpg

    from backends.artifacts.local import LocalArtifactStore
    from backends.backup import backup, no_progress, restore
    from backends.metadata._migrations import load_migrations
    from backends.registry import open_metadata_store

    migrations = load_migrations("postgres" if dialect == "postgres" else "sqlite")
    old = migrations[-2][0]
    insert = ("INSERT INTO experiments (experiment_id, name, artifact_location, creation_time,"
              " last_update_time) VALUES (5, 'kept', 'mlflow-artifacts:/5', 1, 1)")
    if dialect == "sqlite":
        source, target = (f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}")
        with sqlite3.connect(tmp_path / "old.db") as db:
            db.execute("CREATE TABLE mlgate_schema (version INTEGER NOT NULL)")
            for version, script in migrations[:-1]:
                db.executescript(script)
            db.execute("INSERT INTO mlgate_schema VALUES (?)", (old,))
            db.execute(insert)
    else:
        source = pg_databases.create("old", migrated=False)
        target = pg_databases.create("new", migrated=False)
        conn = await asyncpg.connect(source)
        try:
            await conn.execute("CREATE TABLE mlgate_schema (version INTEGER NOT NULL)")
            for version, script in migrations[:-1]:
                await conn.execute(script)
            await conn.execute("INSERT INTO mlgate_schema VALUES ($1)", old)
            await conn.execute(insert)
        finally:
            await conn.close()
    async with LocalArtifactStore(str(tmp_path / "art")) as art, \
            LocalArtifactStore(str(tmp_path / "backups")) as dest:
        made = await backup(metadata_uri=source, source=art, dest=dest, location="b",
                            source_label="a", with_artifacts=True, audit=True,
                            progress=no_progress)
        assert made.schema_version == old
        done = await restore(metadata_uri=target, target=art, backups=dest, backup_id=None,
                             force=False, with_artifacts=True, progress=no_progress)
        assert done.schema_version == old
    store = open_metadata_store(target)
    await store.open()
    try:
        assert await store.schema_version() == migrations[-1][0]
        assert (await store.get_experiment("5")).name == "kept"
    finally:
        await store.aclose()


async def test_restore_checks_what_it_reads(tmp_path: Path) -> None:
    """An artifact copy whose bytes changed in the backup is reported, not restored; a
    destination holding files is refused without force."""
    from backends.artifacts.local import LocalArtifactStore
    from backends.backup import NotEmpty, backup, no_progress, restore
    from backends.backup.layout import object_path
    from backends.registry import open_metadata_store

    source = f"sqlite:///{tmp_path / 'm.db'}"
    store = open_metadata_store(source)
    await store.open()
    await store.aclose()

    async def chunks(data: bytes) -> Any:
        yield data

    async with LocalArtifactStore(str(tmp_path / "art")) as art, \
            LocalArtifactStore(str(tmp_path / "backups")) as dest, \
            LocalArtifactStore(str(tmp_path / "restored")) as target:
        await art.put("0/r1/artifacts/a.txt", chunks(b"first"))
        await art.put("0/r1/artifacts/b.txt", chunks(b"second"))
        made = await backup(metadata_uri=source, source=art, dest=dest, location="b",
                            source_label="a", with_artifacts=True, audit=True,
                            progress=no_progress)
        assert (made.artifacts, made.copied, made.hashed) == (2, 2, 0)
        async with art.get("0/r1/artifacts/b.txt", 0, 0) as stream:
            assert stream.sha256 is not None
            rotten = tmp_path / "backups" / object_path(stream.sha256)
        rotten.write_bytes(b"SECOND")  # the copy's own stored SHA-256 stays
        with pytest.raises(NotEmpty):
            await restore(metadata_uri=f"sqlite:///{tmp_path / 'r.db'}", target=art,
                          backups=dest, backup_id=None, force=False, with_artifacts=True,
                          progress=no_progress)
        done = await restore(metadata_uri=f"sqlite:///{tmp_path / 'r.db'}", target=target,
                             backups=dest, backup_id=None, force=False,
                             with_artifacts=True, progress=no_progress)
        assert (done.restored, done.corrupt, done.missing) == (
            1, ["0/r1/artifacts/b.txt"], [])
