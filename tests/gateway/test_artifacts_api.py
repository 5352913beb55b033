"""The mlflow-artifacts proxy and artifacts/list, through a real socket."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway.app import create_app
from gateway.routes.artifacts import content_disposition, guess_mime_type, parse_range
from gateway.settings import Settings

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]

A = "/api/2.0/mlflow-artifacts/artifacts"
AJAX = "/ajax-api/2.0/mlflow-artifacts/artifacts"
MIB = 1024 * 1024
INVALID_PATH = {
    "error_code": "INVALID_PARAMETER_VALUE",
    "message": "Invalid path",
    "sqlstate": "KAM00",
    "error_class": "INVALID_PARAMETER_VALUE",
}


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(backend_store_uri=f"sqlite:///{tmp_path}/m.db",
                    artifacts_destination=str(tmp_path / "art"), **kw)


@pytest.fixture
async def client(aiohttp_client: MakeClient, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(_settings(tmp_path)))


def _on_disk(root: Path) -> list[str]:
    """What is in the destination, besides the server's own (empty) staging folder."""
    if not root.exists():
        return []
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    return [p for p in found if not (p.startswith(".mlgate-tmp") and (root / p).is_dir())]


async def _put(client: Client, path: str, data: bytes, prefix: str = A) -> None:
    # BytesIO: aiohttp warns (an error here) about sending megabytes of raw bytes at once.
    resp = await client.put(f"{prefix}/{path}", data=io.BytesIO(data))
    assert resp.status == 200, await resp.text()


async def _body(chunks: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(chunks):
        yield bytes([i % 251]) * size


# -- upload and download -----------------------------------------------------------------


async def test_put_then_get_streams_both_ways(client: Client, tmp_path: Path) -> None:
    digest = hashlib.sha256()
    async for chunk in _body(20):
        digest.update(chunk)
    resp = await client.put(f"{A}/1/r/artifacts/model.bin", data=_body(20))
    assert resp.status == 200
    assert await resp.read() == b""  # stock's native route: 200, empty body
    assert (tmp_path / "art/1/r/artifacts/model.bin").stat().st_size == 20 * 256 * 1024

    resp = await client.get(f"{A}/1/r/artifacts/model.bin")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"] == "attachment; filename=model.bin"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Length"] == str(20 * 256 * 1024)
    got = hashlib.sha256()
    async for chunk in resp.content.iter_chunked(MIB):
        got.update(chunk)
    assert got.digest() == digest.digest()


async def test_upload_in_small_http_chunks(client: Client, tmp_path: Path) -> None:
    # Each HTTP chunk reaches the store as a piece of its own: thousands of them per batch.
    data = os.urandom(5 * MIB // 2 + 3)

    async def small() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 700):
            yield data[i : i + 700]

    resp = await client.put(f"{A}/1/r/artifacts/small.bin", data=small())
    assert resp.status == 200, await resp.text()
    assert (tmp_path / "art/1/r/artifacts/small.bin").read_bytes() == data
    resp = await client.get(f"{A}/1/r/artifacts/small.bin")
    assert resp.headers["X-MLgate-SHA256"] == hashlib.sha256(data).hexdigest()
    assert await resp.read() == data


@pytest.mark.parametrize(("name", "ctype"), [
    ("notes.txt", "text/plain"),
    ("conf.yaml", "text/plain"),
    ("data.json", "text/plain"),
    ("MLmodel", "text/plain"),
    ("plot.png", "image/png"),
    ("model.pkl", "application/octet-stream"),
])
async def test_download_content_type(client: Client, name: str, ctype: str) -> None:
    await _put(client, f"x/{name}", b"content")
    resp = await client.get(f"{A}/x/{name}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == ctype
    assert await resp.read() == b"content"


async def test_ajax_prefix_serves_the_same_tree(client: Client) -> None:
    await _put(client, "d/f.txt", b"hello", prefix=AJAX)
    resp = await client.get(f"{A}/d/f.txt")
    assert await resp.read() == b"hello"


async def test_overwrite(client: Client) -> None:
    await _put(client, "d/f.txt", b"one")
    await _put(client, "d/f.txt", b"two!")
    assert await (await client.get(f"{A}/d/f.txt")).read() == b"two!"


async def test_empty_file(client: Client) -> None:
    await _put(client, "d/empty.txt", b"")
    resp = await client.get(f"{A}/d/empty.txt")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "0"
    assert await resp.read() == b""


async def test_missing_file_is_mlflow_404(client: Client) -> None:
    resp = await client.get(f"{A}/1/r/artifacts/nope.txt")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "No such artifact: '1/r/artifacts/nope.txt'",
        "sqlstate": "KAM00",
        "error_class": "RESOURCE_NOT_FOUND",
    }


async def test_directory_get_is_400_detail(client: Client) -> None:
    await _put(client, "d/sub/f.txt", b"x")
    resp = await client.get(f"{A}/d/sub")
    assert resp.status == 400
    assert await resp.json() == {
        "detail": "Artifact path refers to a directory, not a file: 'd/sub'"}
    resp = await client.get(f"{A}/d/sub", headers={"Range": "bytes=0-1"})
    assert resp.status == 400


async def test_trailing_slash_put_is_400_detail(client: Client, tmp_path: Path) -> None:
    resp = await client.put(f"{A}/d/sub/", data=b"x")
    assert resp.status == 400
    assert await resp.json() == {
        "detail": "Artifact path must include a filename (cannot end with '/')."}
    assert _on_disk(tmp_path / "art") == []


async def test_put_over_a_directory_is_400(client: Client) -> None:
    await _put(client, "d/sub/f.txt", b"x")
    resp = await client.put(f"{A}/d/sub", data=b"y")
    assert resp.status == 400
    assert (await resp.json())["error_code"] == "INVALID_PARAMETER_VALUE"


# -- ranges ------------------------------------------------------------------------------


async def test_ranges(client: Client) -> None:
    data = os.urandom(3 * MIB + 11)
    await _put(client, "r.bin", data)
    size = len(data)
    cases = [
        ("bytes=10-19", 10, 20),
        ("bytes=0-0", 0, 1),
        ("bytes=-5", size - 5, size),
        ("bytes=-999999999", 0, size),
        (f"bytes={MIB}-", MIB, size),
        (f"bytes={size - 3}-{size + 100}", size - 3, size),
    ]
    for header, start, end in cases:
        resp = await client.get(f"{A}/r.bin", headers={"Range": header})
        assert resp.status == 206, header
        assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}", header
        assert resp.headers["Content-Length"] == str(end - start)
        assert await resp.read() == data[start:end], header


@pytest.mark.parametrize("header", ["bytes=99999999-", "bytes=-0"])
async def test_unsatisfiable_range_is_416(client: Client, header: str) -> None:
    await _put(client, "r.bin", b"0123456789")
    resp = await client.get(f"{A}/r.bin", headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == "bytes */10"


@pytest.mark.parametrize("header", ["bytes=0-1,4-5", "items=0-1", "bytes=5-2", "bytes=x-"])
async def test_unsupported_or_malformed_range_sends_everything(client: Client,
                                                               header: str) -> None:
    await _put(client, "r.bin", b"0123456789")
    resp = await client.get(f"{A}/r.bin", headers={"Range": header})
    assert resp.status == 200
    assert await resp.read() == b"0123456789"


async def test_if_range_sends_everything(client: Client) -> None:
    await _put(client, "r.bin", b"0123456789")
    resp = await client.get(f"{A}/r.bin", headers={"Range": "bytes=0-1", "If-Range": '"x"'})
    assert resp.status == 200
    assert await resp.read() == b"0123456789"


# -- listing and deleting ----------------------------------------------------------------


async def test_list(client: Client) -> None:
    await _put(client, "1/r/artifacts/b.txt", b"bb")
    await _put(client, "1/r/artifacts/a.txt", b"a")
    await _put(client, "1/r/artifacts/empty.txt", b"")
    await _put(client, "1/r/artifacts/model/MLmodel", b"m")
    resp = await client.get(A, params={"path": "1/r/artifacts"})
    assert resp.status == 200
    assert await resp.json() == {"files": [
        {"path": "a.txt", "is_dir": False, "file_size": 1},
        {"path": "b.txt", "is_dir": False, "file_size": 2},
        {"path": "empty.txt", "is_dir": False},  # stock omits a zero file_size
        {"path": "model", "is_dir": True},
    ]}
    assert await (await client.get(A)).json() == {"files": [{"path": "1", "is_dir": True}]}
    assert await (await client.get(A, params={"path": "1/r/artifacts/"})).json() == \
        await (await client.get(A, params={"path": "1/r/artifacts"})).json()


async def test_list_missing_empty_or_file_is_empty_object(client: Client,
                                                          tmp_path: Path) -> None:
    assert await (await client.get(A, params={"path": "nothing"})).json() == {}
    assert await (await client.get(A)).json() == {}
    (tmp_path / "art" / "emptydir").mkdir(parents=True)
    assert await (await client.get(A, params={"path": "emptydir"})).json() == {}
    await _put(client, "d/f.txt", b"x")
    assert await (await client.get(A, params={"path": "d/f.txt"})).json() == {}


async def test_delete_file_and_directory(client: Client, tmp_path: Path) -> None:
    for p in ["keep.txt", "d/a.txt", "d/sub/b.txt"]:
        await _put(client, p, b"x")
    resp = await client.delete(f"{A}/d/a.txt")
    assert resp.status == 200
    assert await resp.json() == {}
    assert (await client.get(f"{A}/d/a.txt")).status == 404
    resp = await client.delete(f"{A}/d")
    assert await resp.json() == {}
    assert _on_disk(tmp_path / "art") == ["keep.txt"]


async def test_delete_missing_is_ok_like_stock(client: Client) -> None:
    resp = await client.delete(f"{A}/not/there")
    assert resp.status == 200
    assert await resp.json() == {}


async def test_delete_root_is_refused(client: Client, tmp_path: Path) -> None:
    await _put(client, "keep.txt", b"x")
    for path in ["", ".", "./"]:
        resp = await client.delete(f"{A}/{path}")
        assert resp.status == 400, path
    assert _on_disk(tmp_path / "art") == ["keep.txt"]


# -- traversal ---------------------------------------------------------------------------

TRAVERSALS = [
    "%2e%2e/outside.txt",
    "a/%2e%2e/%2e%2e/outside.txt",
    "..%2foutside.txt",
    "%252e%252e/outside.txt",  # double-encoded
    "%25252e%25252e%25252foutside.txt",  # triple-encoded
    "a%5C..%5Coutside.txt",  # backslash
    "a%23b",  # '#'
    "a%2523b",  # double-encoded '#'
    "%2Fetc%2Fpasswd",  # absolute
    "/etc/passwd",  # leading '/' after the route's own
    "C:%5Cwindows",  # Windows drive
    "C:/windows",
    "file:%2F%2F%2Fetc%2Fpasswd",
    "a%00b",  # NUL
]


def _raw(client: Client, path_and_query: str) -> URL:
    # encoded=True: sent byte for byte; the client would otherwise resolve "%2e%2e" itself.
    return URL(f"http://{client.server.host}:{client.server.port}{path_and_query}",
               encoded=True)


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_traversal_is_rejected_everywhere(client: Client, tmp_path: Path,
                                                path: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        resp = await client.session.request(method, _raw(client, f"{A}/{path}"), data=b"evil")
        assert resp.status == 400, (method, path)
        assert await resp.json() == INVALID_PATH, (method, path)
    for method, url in [("POST", "/api/2.0/mlflow-artifacts/mpu/create/"),
                        ("GET", "/api/2.0/mlflow-artifacts/presigned/")]:
        resp = await client.session.request(method, _raw(client, url + path), json={"path": "x"})
        assert resp.status == 400, (url, path)
        assert await resp.json() == INVALID_PATH
    resp = await client.session.get(_raw(client, f"{A}?path={path}"))
    assert resp.status == 400, path
    assert await resp.json() == INVALID_PATH
    assert not (tmp_path / "outside.txt").exists()
    assert _on_disk(tmp_path / "art") == []


@pytest.mark.parametrize("path", ["a%2Fb.txt", "with%20space.txt", "dots..in..name.txt",
                                  "..hidden", "a/.../b"])
async def test_harmless_paths_are_accepted(client: Client, path: str) -> None:
    resp = await client.session.put(_raw(client, f"{A}/{path}"), data=b"ok")
    assert resp.status == 200
    assert await (await client.session.get(_raw(client, f"{A}/{path}"))).read() == b"ok"


# -- interrupted uploads -----------------------------------------------------------------


async def _abandon_upload(host: str, port: int, path: str, announced: int, sent: int) -> None:
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {announced}\r\n\r\n".encode()
    )
    for _ in range(sent // MIB):
        writer.write(os.urandom(MIB))
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    """The app as ``mlgate serve`` runs it: handlers are *not* cancelled when the client goes
    away (aiohttp's default; the test client turns cancellation on), so the upload sees
    the connection reset instead."""
    runner = web.AppRunner(create_app(_settings(tmp_path)), handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("cancellation", [True, False], ids=["cancelled", "connection-reset"])
async def test_client_disconnect_mid_upload_leaves_nothing(
    client: Client, server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    cancellation: bool,
) -> None:
    if cancellation:
        host, port, base = client.server.host, client.server.port, str(client.make_url(""))
    else:
        host, port_text = server.split(":")
        port, base = int(port_text), f"http://{server}"
    async with ClientSession(base.rstrip("/")) as http:
        for name, data in [("keep.txt", b"keep"), ("big.bin", b"old version")]:
            assert (await http.put(f"{A}/d/{name}", data=data)).status == 200
        caplog.set_level(logging.INFO)
        await _abandon_upload(host, port, f"{A}/d/big.bin", announced=64 * MIB, sent=5 * MIB)
        await _abandon_upload(host, port, f"{A}/d/new.bin", announced=64 * MIB, sent=3 * MIB)
        root = tmp_path / "art"
        await _eventually(lambda: _on_disk(root) == ["d", "d/big.bin", "d/keep.txt"])
        if not cancellation:
            await _eventually(lambda: caplog.text.count("aborted by the client") == 2)
        assert await (await http.get(f"{A}/d/big.bin")).read() == b"old version"
        assert (await http.get(f"{A}/d/new.bin")).status == 404
        assert await (await http.get(A, params={"path": "d"})).json() == {"files": [
            {"path": "big.bin", "is_dir": False, "file_size": 11},
            {"path": "keep.txt", "is_dir": False, "file_size": 4},
        ]}
        # The same paths take a whole upload afterwards, with its checksum.
        data = os.urandom(3 * MIB + 1)
        assert (await http.put(f"{A}/d/big.bin", data=io.BytesIO(data))).status == 200
        resp = await http.get(f"{A}/d/big.bin")
        assert resp.headers["X-MLgate-SHA256"] == hashlib.sha256(data).hexdigest()
        assert await resp.read() == data
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_client_disconnect_mid_download_is_quiet(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    await _put(client, "big.bin", os.urandom(16 * MIB))
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {A}/big.bin HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await reader.readexactly(MIB)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.2)
    resp = await client.get(f"{A}/big.bin", headers={"Range": "bytes=0-3"})
    assert resp.status == 206
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_store_failure_mid_download_cuts_the_connection(
    client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Headers (200, Content-Length) are out before the failure, so the only honest signal
    # left is a short body: the client must see an error, not a complete-looking file.
    await _put(client, "big.bin", os.urandom(32 * MIB))
    resp = await client.get(f"{A}/big.bin")
    assert resp.status == 200
    await resp.content.readexactly(MIB)
    with (tmp_path / "art/big.bin").open("r+b") as f:
        f.truncate(0)  # in place, so the server's open file shrinks under it
    with pytest.raises(aiohttp.ClientPayloadError):
        while await resp.content.read(MIB):
            pass
    await _eventually(lambda: "failed mid-stream" in caplog.text)


# -- not served, not supported -----------------------------------------------------------


async def test_no_serve_artifacts_answers_503(aiohttp_client: MakeClient, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(_settings(tmp_path, serve_artifacts=False)))
    native = {"detail": "Artifact serving is disabled. Run `mlflow server` with "
                        "`--serve-artifacts` to enable."}
    for method in ("GET", "PUT"):
        resp = await client.request(method, f"{A}/x.txt", data=b"x")
        assert resp.status == 503
        assert await resp.json() == native
    for method, url, rule in [
        ("GET", A, "/api/2.0/mlflow-artifacts/artifacts"),
        ("DELETE", f"{A}/x.txt", "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>"),
        ("POST", "/ajax-api/2.0/mlflow-artifacts/mpu/create/x",
         "/ajax-api/2.0/mlflow-artifacts/mpu/create/<path:artifact_path>"),
        ("GET", "/api/2.0/mlflow-artifacts/presigned/x",
         "/api/2.0/mlflow-artifacts/presigned/<path:artifact_path>"),
    ]:
        resp = await client.request(method, url, json={"path": "x"})
        assert resp.status == 503, url
        assert resp.headers["Content-Type"].startswith("text/html")
        assert await resp.text() == (
            f"Endpoint: {rule} disabled due to the mlflow server running with "
            "`--no-serve-artifacts`. To enable artifacts server functionality, run "
            "`mlflow server` with `--serve-artifacts`")
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize(("action", "body"), [
    ("create", {"path": "/local/model.bin", "num_parts": 3}),
    ("complete", {"path": "model.bin", "upload_id": "u",
                  "parts": [{"part_number": 1, "etag": "e", "url": "http://x"}]}),
    ("abort", {"path": "model.bin", "upload_id": "u"}),
])
async def test_multipart_is_not_implemented(client: Client, action: str,
                                            body: dict[str, Any]) -> None:
    resp = await client.post(f"/api/2.0/mlflow-artifacts/mpu/{action}/1/r/artifacts",
                             json=body)
    assert resp.status == 501
    assert await resp.json() == {
        "error_code": "NOT_IMPLEMENTED",
        "message": "Multipart upload is not supported for the current artifact repository",
    }


async def test_multipart_create_without_path_is_400(client: Client) -> None:
    resp = await client.post("/api/2.0/mlflow-artifacts/mpu/create/1/r", json={"num_parts": 2})
    assert resp.status == 400
    assert (await resp.json())["error_code"] == "INVALID_PARAMETER_VALUE"


async def test_presigned_is_not_implemented(client: Client) -> None:
    resp = await client.get("/api/2.0/mlflow-artifacts/presigned/1/r/artifacts/m.bin")
    assert resp.status == 501
    assert await resp.json() == {
        "error_code": "NOT_IMPLEMENTED",
        "message": "Multipart download is not supported for the current artifact repository",
    }


# -- artifacts/list for a run ------------------------------------------------------------


async def _new_run(client: Client) -> dict[str, Any]:
    resp = await client.post("/api/2.0/mlflow/experiments/create", json={"name": "e"})
    assert resp.status == 200, await resp.text()
    exp_id = (await resp.json())["experiment_id"]
    resp = await client.post("/api/2.0/mlflow/runs/create",
                             json={"experiment_id": exp_id, "start_time": 1})
    assert resp.status == 200, await resp.text()
    info: dict[str, Any] = (await resp.json())["run"]["info"]
    return info


async def test_run_artifacts_list(client: Client) -> None:
    info = await _new_run(client)
    run_id, root = info["run_id"], info["artifact_uri"]
    assert root.startswith("mlflow-artifacts:/")
    base = root.removeprefix("mlflow-artifacts:").lstrip("/")
    await _put(client, f"{base}/metrics.json", b"{}")
    await _put(client, f"{base}/model/MLmodel", b"flavors")
    await _put(client, f"{base}/model/data/w.bin", b"123")

    url = "/api/2.0/mlflow/artifacts/list"
    resp = await client.get(url, params={"run_id": run_id})
    assert resp.status == 200
    assert await resp.json() == {"root_uri": root, "files": [
        {"path": "metrics.json", "is_dir": False, "file_size": 2},
        {"path": "model", "is_dir": True},
    ]}
    resp = await client.get(url, params={"run_uuid": run_id, "path": "model"})
    assert await resp.json() == {"root_uri": root, "files": [
        {"path": "model/MLmodel", "is_dir": False, "file_size": 7},
        {"path": "model/data", "is_dir": True},
    ]}
    resp = await client.get("/ajax-api/2.0/mlflow/artifacts/list",
                            params={"run_id": run_id, "path": "model/data"})
    assert (await resp.json())["files"] == [
        {"path": "model/data/w.bin", "is_dir": False, "file_size": 3}]
    resp = await client.get(url, params={"run_id": run_id, "path": "nothing"})
    assert await resp.json() == {"root_uri": root}


async def test_run_artifacts_list_errors(client: Client) -> None:
    url = "/api/2.0/mlflow/artifacts/list"
    resp = await client.get(url, params={"run_id": "0" * 32})
    assert resp.status == 404
    assert (await resp.json())["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    info = await _new_run(client)
    resp = await client.get(url, params={"run_id": info["run_id"], "path": "../../x"})
    assert resp.status == 400
    assert await resp.json() == INVALID_PATH
    resp = await client.get(url, params={"path": "x"})
    assert resp.status == 400


async def test_run_artifacts_list_without_serving(aiohttp_client: MakeClient,
                                                  tmp_path: Path) -> None:
    # The run's root is then a local directory, listed directly as stock does.
    client = await aiohttp_client(create_app(_settings(tmp_path, serve_artifacts=False)))
    info = await _new_run(client)
    root = Path(info["artifact_uri"])
    assert root.is_absolute()
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_bytes(b"abc")
    resp = await client.get("/api/2.0/mlflow/artifacts/list",
                            params={"run_id": info["run_id"], "path": "sub"})
    assert await resp.json() == {"root_uri": str(root), "files": [
        {"path": "sub/f.txt", "is_dir": False, "file_size": 3}]}


# -- pure helpers ------------------------------------------------------------------------


def test_parse_range() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 10)
    assert parse_range("bytes=90-", 100) == (90, 100)
    assert parse_range("bytes=-10", 100) == (90, 100)
    assert parse_range("bytes=50-500", 100) == (50, 100)
    assert parse_range(" bytes = 1 - 2 ", 100) == (1, 3)
    for ignored in ["bytes=1-2,5-6", "bytes=", "bytes=-", "bytes=a-b", "lines=1-2",
                    "bytes=5-1", "bytes=--1", "bytes=1"]:
        assert parse_range(ignored, 100) is None, ignored
    for bad in ["bytes=100-", "bytes=-0", "bytes=0-"]:
        with pytest.raises(ValueError):
            parse_range(bad, 100 if bad != "bytes=0-" else 0)


def test_guess_mime_type_and_disposition() -> None:
    assert guess_mime_type("a/b/MLmodel") == "text/plain"
    assert guess_mime_type("requirements.txt") == "text/plain"
    assert guess_mime_type("x.html") == "text/html"
    assert guess_mime_type("noext") == "application/octet-stream"
    assert content_disposition("model.pkl") == "attachment; filename=model.pkl"
    assert content_disposition("a b.txt") == 'attachment; filename="a b.txt"'
    assert content_disposition("日本語.txt") == (
        "attachment; filename=.txt; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt")


STOCK_AGREES = [
    "a/b.txt", "a%2Fb", "%2e%2e/x", "a/../b", "..", "a/..", "%252e%252e/x", "a#b", "a%23b",
    "/abs", "//abs", "C:/x", "c:\\x", "file:///etc/passwd", "file://host/x", "a\tb", "a\x01b",
    "a?b", "a?", "a%3Fb", "with space", "a//b", "./a", "a/./b", "", ".", "...", "..a", "%",
    "%zz", "%25", "a;b", "http://x/y", "%E6%97%A5", "a%2F..%2Fb", "%2E%2E%2F%2E%2E",
]
STRICTER_THAN_STOCK = ["C:x", "a\\b", "a\x00b", "a%00b"]  # stock accepts these on Linux


@pytest.mark.parametrize("path", STOCK_AGREES + STRICTER_THAN_STOCK)
def test_validate_path_matches_stock(path: str) -> None:
    from gateway.artifact_paths import validate_path
    from gateway.errors import MlflowError

    uri = pytest.importorskip("mlflow.utils.uri")
    exceptions = pytest.importorskip("mlflow.exceptions")
    try:
        stock: str | None = uri.validate_path_is_safe(path)
    except exceptions.MlflowException:
        stock = None
    try:
        ours: str | None = validate_path(path)
    except MlflowError:
        ours = None
    if path in STRICTER_THAN_STOCK:
        assert stock is not None
        assert ours is None
    else:
        assert ours == stock


def test_proxied_root_path() -> None:
    from gateway.artifact_paths import proxied_root_path
    from gateway.errors import MlflowError

    assert proxied_root_path("mlflow-artifacts:/1/abc/artifacts") == "1/abc/artifacts"
    assert proxied_root_path("mlflow-artifacts://host:5000/1/abc/artifacts") == "1/abc/artifacts"
    assert proxied_root_path("mlflow-artifacts:") == ""
    assert proxied_root_path(
        "https://h/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts") == "1/abc/artifacts"
    assert proxied_root_path("http://h/other/path") is None
    assert proxied_root_path("/srv/mlruns/1/abc/artifacts") is None
    assert proxied_root_path("s3://bucket/1/abc/artifacts") is None
    for bad in ["mlflow-artifacts:/../../etc", "mlflow-artifacts:/1/%2e%2e/%2e%2e/x",
                "http://h/api/2.0/mlflow-artifacts/artifacts/../x"]:
        with pytest.raises(MlflowError):
            proxied_root_path(bad)
