"""The MLflow web UI's files, served as stock serves them: ``/`` and ``/static-files/...``
from the real bundle of the ``mlflow`` wheel installed in the venv, ``--static-dir``,
``--static-prefix``, the page shown when the bundle is missing, ``mlgate ui install``, and
``/`` behind ``--auth``. Paths an attacker would send go through a raw socket, so the server
sees them byte for byte (the client would normalise ``..`` away)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from access_world import ADMIN_PASSWORD, PASSWORD, basic, seed_admin, settings_for, store_uris
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = Path(str(importlib.metadata.distribution("mlflow").locate_file(
    "mlflow/server/js/build")))
INDEX = (BUNDLE / "index.html").read_bytes()
MAIN_JS = re.search(rb'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', INDEX)
API = "/api/2.0/mlflow"


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(backend_store_uri=f"sqlite:///{tmp_path}/ui.db",
                    artifacts_destination=str(tmp_path / "art"), **extra)


async def _client(aiohttp_client: Any, settings: Settings) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


async def _raw_status(client: TestClient, target: str) -> int:
    """The status of ``GET target`` sent as is on the socket, undecoded and unnormalised."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


def _stock_headers(headers: Any) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "SAMEORIGIN"


# -- the real bundle ------------------------------------------------------------------------


async def test_index_is_the_bundles_page_unchanged(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, _settings(tmp_path))
    resp = await client.get("/")
    assert resp.status == 200
    assert await resp.read() == INDEX
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    _stock_headers(resp.headers)
    # No catch-all: the UI routes with the URL's fragment, the server only sees "/".
    for path in ("/index.html", "/experiments", "/favicon.ico"):
        assert (await client.get(path)).status == 404, path


@pytest.mark.parametrize(("name", "ctype"), [
    ("index.html", "text/html; charset=utf-8"),
    ("manifest.json", "application/json"),
    ("favicon.ico", "image/vnd.microsoft.icon"),
])
async def test_bundle_files_have_stocks_types(aiohttp_client: Any, tmp_path: Path, name: str,
                                              ctype: str) -> None:
    client = await _client(aiohttp_client, _settings(tmp_path))
    resp = await client.get(f"/static-files/{name}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == ctype
    assert await resp.read() == (BUNDLE / name).read_bytes()


async def test_the_main_script_is_served_cached(aiohttp_client: Any, tmp_path: Path) -> None:
    assert MAIN_JS is not None, "index.html no longer names static/js/main.*.js"
    path = MAIN_JS.group(1).decode()
    client = await _client(aiohttp_client, _settings(tmp_path))
    resp = await client.get("/" + path)
    assert resp.status == 200
    body = await resp.read()
    assert body == (BUNDLE / path.removeprefix("static-files/")).read_bytes()
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "public, max-age=2419200"
    _stock_headers(resp.headers)
    etag = resp.headers["ETag"]
    again = await client.get("/" + path, headers={"If-None-Match": etag})
    assert again.status == 304
    part = await client.get("/" + path, headers={"Range": "bytes=0-9"})
    assert part.status == 206 and await part.read() == body[:10]
    css = next((BUNDLE / "static" / "css").glob("*.css"))
    resp = await client.get(f"/static-files/static/css/{css.name}")
    assert resp.headers["Content-Type"] == "text/css; charset=utf-8"


# -- what must not be served ------------------------------------------------------------------


@pytest.fixture
def small_bundle(tmp_path: Path) -> Path:
    """A bundle folder beside secrets it must not reveal: a file next to it, and symbolic
    links from inside it to a file and a folder outside."""
    root = tmp_path / "bundle"
    (root / "static").mkdir(parents=True)
    (root / "index.html").write_text("<html>small</html>")
    (root / "static" / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("SECRET")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.js").write_text("SECRET")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "static" / "out").symlink_to(tmp_path / "outside")
    (root / "inside.js").symlink_to(root / "static" / "app.js")  # stays inside: served
    return root


TRAVERSALS = [
    "/static-files/../secret.txt",
    "/static-files/static/../../secret.txt",
    "/static-files/%2e%2e/secret.txt",
    "/static-files/%2E%2E%2Fsecret.txt",
    "/static-files/..%2fsecret.txt",
    "/static-files/static%2f..%2f..%2fsecret.txt",
    "/static-files/..%5csecret.txt",
    "/static-files/%2fetc%2fpasswd",
    "/static-files//etc/passwd",
    "/static-files/" + "%2e%2e/" * 8 + "etc/passwd",
    "/static-files/link.txt",
    "/static-files/static/out/x.js",
    "/static-files/index.html%00.js",
    "/static-files/./index.html",
    "/static-files/static//app.js",
    "/static-files/static",
    "/static-files/",
    "/static-files/nonexistent.js",
    "/static-files/" + "a" * 300,  # a name too long for the filesystem: was a 500
    "/static-files/static/" + "a" * 300 + ".js",
]


async def test_head_answers_as_get_without_a_body(aiohttp_client: Any, tmp_path: Path,
                                                 small_bundle: Path) -> None:
    client = await _client(aiohttp_client, _settings(tmp_path, static_dir=str(small_bundle)))
    for path in ("/", "/static-files/static/app.js"):
        get, head = await client.get(path), await client.head(path)
        assert (head.status, head.headers["Content-Type"]) == (200, get.headers["Content-Type"])
        assert await head.read() == b""
    assert (await client.head("/static-files/nonexistent.js")).status == 404


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_nothing_outside_the_bundle_is_served(aiohttp_client: Any, tmp_path: Path,
                                                    small_bundle: Path, target: str) -> None:
    client = await _client(aiohttp_client, _settings(tmp_path, static_dir=str(small_bundle)))
    assert await _raw_status(client, target) == 404
    assert await _raw_status(client, "/static-files/static/app.js") == 200
    assert await _raw_status(client, "/static-files/inside.js") == 200


async def test_static_dir_is_served(aiohttp_client: Any, tmp_path: Path,
                                    small_bundle: Path) -> None:
    client = await _client(aiohttp_client, _settings(tmp_path, static_dir=str(small_bundle)))
    assert await (await client.get("/")).text() == "<html>small</html>"


# -- no bundle ----------------------------------------------------------------------------------


async def test_missing_bundle_explains_how_to_get_it(aiohttp_client: Any,
                                                     tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    client = await _client(aiohttp_client, _settings(tmp_path, static_dir=str(empty)))
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    page = await resp.text()
    assert "mlgate ui install" in page and str(empty) in page
    assert (await client.get("/static-files/index.html")).status == 404
    assert (await client.get("/health")).status == 200


def _fake_wheel(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def _mlgate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60, check=False)


async def test_ui_install_extracts_the_bundle_from_a_wheel(aiohttp_client: Any,
                                                           tmp_path: Path) -> None:
    build = "mlflow/server/js/build/"
    wheel = _fake_wheel(tmp_path / "mlflow-3.17.2-py3-none-any.whl", {
        build + "index.html": "<html>from the wheel</html>",
        build + "static/js/main.js": "1",
        "mlflow/__init__.py": "",
    })
    dest = tmp_path / "ui"
    done = _mlgate("ui", "install", "--wheel", str(wheel), "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) \
        == ["index.html", "static/js/main.js"]
    client = await _client(aiohttp_client, _settings(tmp_path, static_dir=str(dest)))
    assert await (await client.get("/")).text() == "<html>from the wheel</html>"

    evil = _fake_wheel(tmp_path / "evil.whl", {build + "index.html": "x",
                                               build + "../../../escaped.txt": "x"})
    done = _mlgate("ui", "install", "--wheel", str(evil), "--dest", str(tmp_path / "ui2"))
    assert done.returncode != 0 and "unsafe member" in done.stderr
    assert not list(tmp_path.rglob("escaped.txt")) and not (tmp_path / "ui2").exists()
    done = _mlgate("ui", "install", "--wheel", str(_fake_wheel(tmp_path / "no.whl", {"a": ""})),
                   "--dest", str(tmp_path / "ui3"))
    assert done.returncode != 0 and "holds no" in done.stderr


# -- --static-prefix ----------------------------------------------------------------------------


async def test_static_prefix_serves_everything_under_it(aiohttp_client: Any,
                                                        tmp_path: Path) -> None:
    client = await _client(aiohttp_client, _settings(tmp_path, static_prefix="/mlflow"))
    resp = await client.get("/mlflow/")
    assert resp.status == 200 and await resp.read() == INDEX
    for target, location in (("/mlflow", "/mlflow/"), ("/mlflow?a=1&b=%20", "/mlflow/?a=1&b=%20")):
        resp = await client.get(target, allow_redirects=False)
        assert resp.status == 308 and resp.headers["Location"] == location
    assert (await client.get("/mlflow/static-files/favicon.ico")).status == 200
    data = await (await client.get(f"/mlflow{API}/experiments/search",
                                   params={"max_results": "5"})).json()
    assert [e["name"] for e in data["experiments"]] == ["Default"]
    assert (await client.get("/mlflow/health")).status == 200
    for path in ("/", "/static-files/favicon.ico", f"{API}/experiments/search", "/health",
                 "/mlflowx", "/mlflow/mlflow/"):
        assert (await client.get(path)).status == 404, path
    # An unknown API path under the prefix is answered in MLflow's JSON, as without one.
    resp = await client.get(f"/mlflow{API}/no-such-thing")
    assert resp.status == 404 and (await resp.json())["error_code"] == "ENDPOINT_NOT_FOUND"


def test_static_prefix_is_checked_at_start(tmp_path: Path) -> None:
    for bad in ("mlflow", "/mlflow/", "/ml flow", "/a/../b", "/{x}"):
        done = _mlgate("serve", "--static-prefix", bad, "--backend-store-uri",
                       f"sqlite:///{tmp_path}/x.db")
        assert done.returncode == 2 and "--static-prefix" in done.stderr, bad


# -- with --auth --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_uris(request, tmp_path)


async def test_index_needs_a_login_and_files_do_not(aiohttp_client: Any, store_uri: str,
                                                    tmp_path: Path) -> None:
    await seed_admin(store_uri)
    client = await _client(aiohttp_client, settings_for(store_uri, tmp_path))
    resp = await client.get("/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'  # the browser prompts
    assert (await client.get("/", headers=basic("root", "wrong-password"))).status == 401
    resp = await client.get("/", headers=basic("root", ADMIN_PASSWORD))
    assert resp.status == 200 and await resp.read() == INDEX
    # Any signed-in user, admin or not, member of a team or not.
    await client.post(f"{API}/users/create", json={"username": "bob", "password": PASSWORD},
                      headers=basic("root", ADMIN_PASSWORD))
    assert (await client.get("/", headers=basic("bob", PASSWORD))).status == 200
    resp = await client.get("/static-files/favicon.ico")
    assert resp.status == 200 and "WWW-Authenticate" not in resp.headers


async def test_api_under_the_prefix_is_still_checked(aiohttp_client: Any, store_uri: str,
                                                     tmp_path: Path) -> None:
    await seed_admin(store_uri)
    client = await _client(aiohttp_client,
                           settings_for(store_uri, tmp_path, static_prefix="/mlflow"))
    root = basic("root", ADMIN_PASSWORD)

    async def ok(path: str, body: Any, who: dict[str, str], ws: str = "default") -> Any:
        resp = await client.post("/mlflow" + path, json=body,
                                 headers={**who, "X-MLFLOW-WORKSPACE": ws})
        assert resp.status in (200, 201), (path, resp.status, await resp.text())
        return await resp.json()

    await ok("/api/3.0/mlflow/workspaces", {"name": "team-a"}, root)
    for user, team in (("a1", "team-a"), ("a2", "team-a"), ("b1", "default")):
        await ok(f"{API}/users/create", {"username": user, "password": PASSWORD}, root)
        await ok(f"/mlgate/v1/teams/{team}/members", {"username": user}, root)
    exp = (await ok(f"{API}/experiments/create", {"name": "a1's"}, basic("a1"),
                    "team-a"))["experiment_id"]

    async def get(who: dict[str, str]) -> int:
        resp = await client.get(f"/mlflow{API}/experiments/get",
                                params={"experiment_id": exp},
                                headers={**who, "X-MLFLOW-WORKSPACE": "team-a"})
        return resp.status

    assert await get({}) == 401
    assert await get(basic("a2")) == 403  # a member of the team without a grant
    assert await get(basic("b1")) == 404  # another team's: not even told it exists
    assert await get(basic("a1")) == 200
    resp = await client.get("/mlflow/")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    assert (await client.get("/mlflow/", headers=root)).status == 200
    assert (await client.get("/mlflow/static-files/favicon.ico")).status == 200
