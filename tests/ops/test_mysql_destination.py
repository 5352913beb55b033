"""``mlgate import``, ``backup`` and ``restore`` with a MariaDB store as the destination:
none of them is ported to MariaDB yet, so each refuses with a message saying so, before
writing anything, and never with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mytools import connection_ids

ROOT = Path(__file__).resolve().parents[2]


def _mlgate(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLGATE_")}
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "gateway", *args], check=False,
                          capture_output=True, text=True, env=environ, timeout=120, cwd=ROOT)


def _file_store(root: Path) -> Path:
    """A stock FileStore folder holding only the Default experiment."""
    (root / "0").mkdir(parents=True)
    (root / "0" / "meta.yaml").write_text(
        "name: Default\nexperiment_id: '0'\nartifact_location: file:///tmp/x/0\n"
        "lifecycle_stage: active\n")
    return root


@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry-run"])
def test_import_into_mariadb_is_refused(my_database: str, tmp_path: Path,
                                        dry_run: bool) -> None:
    source = _file_store(tmp_path / "mlruns")
    done = _mlgate("import", str(source), *(["--dry-run"] if dry_run else []),
                   "--backend-store-uri", my_database,
                   "--artifacts-destination", str(tmp_path / "art"))
    assert done.returncode == 2, (done.stdout, done.stderr)  # a usage error
    assert "Traceback" not in done.stderr, done.stderr
    assert "not mysql://" in done.stderr and "not ported" in done.stderr, done.stderr
    assert "would bring over" not in done.stdout
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_backup_and_restore_refuse_mariadb(my_database: str, tmp_path: Path,
                                           command: str) -> None:
    done = _mlgate(command, str(tmp_path / "backups"), "--backend-store-uri", my_database,
                   "--artifacts-destination", str(tmp_path / "art"))
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert "not mysql://" in done.stderr, done.stderr
    assert not connection_ids(my_database.rsplit("/", 1)[1])
