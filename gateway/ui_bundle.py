"""Where the MLflow web UI's compiled files (the "bundle") are, and how to get them.

The bundle is the ``mlflow/server/js/build`` folder of the ``mlflow`` wheel: an index.html,
JavaScript, CSS and images, served unchanged. mlgate never imports ``mlflow`` for it; it
looks, in order, at ``--static-dir``, at the files of an installed ``mlflow`` distribution,
and at :func:`data_dir`, which ``mlgate ui install`` fills from the wheel alone (12 MB,
without mlflow's 190 MB of dependencies).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

__all__ = ["BUNDLE_IN_WHEEL", "MLFLOW_UI_VERSION", "data_dir", "download_wheel", "find_bundle",
           "install_from_wheel"]

# The MLflow release whose API mlgate answers; its UI calls exactly that API.
MLFLOW_UI_VERSION = "3.17.2"
# Its one wheel (pure Python, py3-none-any): pip refuses any other file by that name.
MLFLOW_WHEEL_SHA256 = "4e44c03791beb518d8b0a40b0982d958c2634d902f46d67d7907c82107f21fac"
BUNDLE_IN_WHEEL = "mlflow/server/js/build/"


def data_dir() -> Path:
    """Where ``mlgate ui install`` puts the bundle: inside the Python environment mlgate is
    installed in, so it goes away with it (a venv, a container layer)."""
    return Path(sys.prefix) / "share" / "mlgate" / f"mlflow-ui-{MLFLOW_UI_VERSION}"


def _has_index(folder: Path) -> bool:
    return (folder / "index.html").is_file()


def find_bundle(static_dir: str | None) -> Path | None:
    """The bundle's folder, resolved (symbolic links followed), or None when there is none.
    With ``static_dir`` set, only that folder is looked at."""
    if static_dir is not None:
        folder = Path(static_dir)
        return folder.resolve() if _has_index(folder) else None
    try:
        dist = importlib.metadata.distribution("mlflow")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        folder = Path(str(dist.locate_file(BUNDLE_IN_WHEEL)))
        if _has_index(folder):
            return folder.resolve()
    folder = data_dir()
    return folder.resolve() if _has_index(folder) else None


def install_from_wheel(wheel: Path, dest: Path) -> int:
    """Extract the bundle from an ``mlflow`` wheel into ``dest``, replacing what is there;
    returns the number of files. Raises ValueError when the wheel holds no bundle. The
    folder is filled beside ``dest`` and renamed into place, so a server never sees half."""
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist()
                   if m.filename.startswith(BUNDLE_IN_WHEEL) and not m.is_dir()]
        if not any(m.filename == BUNDLE_IN_WHEEL + "index.html" for m in members):
            raise ValueError(f"{wheel.name} holds no {BUNDLE_IN_WHEEL}index.html")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
        try:
            for member in members:
                rel = PurePosixPath(member.filename[len(BUNDLE_IN_WHEEL):])
                if rel.is_absolute() or ".." in rel.parts:
                    raise ValueError(f"{wheel.name}: unsafe member {member.filename!r}")
                target = staging.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
            staging.chmod(0o755)
            old = dest.with_name(dest.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if dest.exists():
                dest.rename(old)
            staging.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return len(members)


def download_wheel(folder: Path) -> Path:
    """Download the ``mlflow`` wheel alone (no dependencies) into ``folder`` with this
    environment's pip, so its index, proxy and certificate settings apply. Raises
    RuntimeError with pip's output when it fails."""
    pinned = folder / "requirements.txt"
    pinned.write_text(f"mlflow=={MLFLOW_UI_VERSION} --hash=sha256:{MLFLOW_WHEEL_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "--require-hashes", "--dest", str(folder),
           "-r", str(pinned)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob(f"mlflow-{MLFLOW_UI_VERSION}-*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed:\n{done.stderr or done.stdout}")
    return wheels[0]


if __name__ == "__main__":
    # `python ui_bundle.py`, the file alone (standard library only): the container image
    # installs the UI in a layer of its own, before mlgate, as `mlgate ui install` would.
    with tempfile.TemporaryDirectory(prefix="mlgate-ui-") as tmp:
        count = install_from_wheel(download_wheel(Path(tmp)), data_dir())
    print(f"installed the MLflow web UI ({count} files) in {data_dir()}")
