"""The issue's acceptance session: the real mlflow client against a running mlgate."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from mytools import ON_EVERY_DATABASE
from session import check_session, run_session

pytestmark = [pytest.mark.e2e, ON_EVERY_DATABASE]


def test_client_session_reads_back(mlgate_url: str, tmp_path: Path) -> None:
    result = run_session(mlgate_url, tmp_path / "session")
    check_session(result, tmp_path / "check")


def test_client_session_survives_restart(mlgate_factory: Any, tmp_path: Path) -> None:
    """Everything logged is still there after a clean stop and a start on the same files."""
    first = mlgate_factory()
    result = run_session(first.url, tmp_path / "session")
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(30) == 0, first.output()
    again = mlgate_factory(workdir=first.workdir)
    result.tracking_uri = again.url
    check_session(result, tmp_path / "check")
