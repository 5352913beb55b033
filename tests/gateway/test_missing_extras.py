"""A store whose driver extra is not installed stops ``mlgate serve`` with one line naming the
extra, not a traceback. The driver is hidden from a subprocess by an import hook that refuses
it, as if it had never been installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, start_server, stop_server

# Runs the CLI with every module named in argv[1] (comma-separated, and their submodules)
# refused at import, the way a missing package is.
_WRAPPER = """
import sys

class Refuse:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if any(name == n or name.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse(sys.argv[1].split(",")))
from gateway.cli import main
main(sys.argv[2:], prog_name="mlgate")
"""


@pytest.mark.parametrize(
    ("refused", "flag", "uri", "extra"),
    [
        pytest.param("aiobotocore", "--artifacts-destination", "s3://bucket/prefix", "s3",
                     id="s3"),
        pytest.param("botocore", "--artifacts-destination", "s3://bucket/prefix", "s3",
                     id="s3-botocore"),
        pytest.param("azure", "--artifacts-destination",
                     "wasbs://container@account.blob.core.windows.net/prefix", "azure",
                     id="azure"),
        pytest.param("asyncpg", "--backend-store-uri", "postgresql://u@127.0.0.1:1/db",
                     "postgres", id="postgres"),
    ],
)
def test_missing_extra_is_one_line_naming_it(
    tmp_path: Path, refused: str, flag: str, uri: str, extra: str
) -> None:
    args = ["serve", "--port", "0", "--backend-store-uri", f"sqlite:///{tmp_path}/m.db",
            "--artifacts-destination", str(tmp_path / "art"), flag, uri]
    done = subprocess.run([sys.executable, "-c", _WRAPPER, refused, *args],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    assert f"pip install 'mlgate[{extra}]'" in errors[0], done.stderr
    assert flag in errors[0], done.stderr
    assert not (tmp_path / "art").exists()


def test_without_uvloop_auto_serves_on_asyncio_and_uvloop_is_one_line(tmp_path: Path) -> None:
    """uvloop is a dependency except on Windows: without it ``--event-loop auto`` (the
    default) runs on asyncio's loop, and asking for uvloop by name stops with one line."""
    args = ["serve", "--port", "0", "--backend-store-uri", f"sqlite:///{tmp_path}/m.db",
            "--artifacts-destination", str(tmp_path / "art"), "--event-loop", "uvloop"]
    done = subprocess.run([sys.executable, "-c", _WRAPPER, "uvloop", *args],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "uvloop is not installed" in errors[0], done.stderr

    port = free_port()
    server = start_server(
        [sys.executable, "-c", _WRAPPER, "uvloop", *args[:-2], "--port", str(port)],
        f"http://127.0.0.1:{port}", tmp_path, timeout=60)
    try:
        assert "1 worker on asyncio's event loop" in server.output(), server.output()
    finally:
        stop_server(server)
