"""The artifact proxy over S3 (moto, SeaweedFS) and Azure (Azurite), through a real socket:
checksum headers, MLflow's mpu/* API in proxy and presigned modes, server-info, and the
translation of object-store failures into MLflow errors."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp.test_utils import TestClient
from object_stores import AZURITE_ACCOUNT, ObjectServer, new_bucket, new_container
from yarl import URL

from backends import errors
from backends.artifacts.s3 import S3ArtifactStore
from backends.registry import open_artifact_store
from gateway.app import create_app
from gateway.routes.artifacts import SHA256_HEADER
from gateway.settings import Settings

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]

A = "/api/2.0/mlflow-artifacts"
MIB = 1024 * 1024


async def _destination(kind: str, request: pytest.FixtureRequest, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, str | None]]:
    """``(artifacts_destination, s3 endpoint)`` for ``kind``, credentials in the
    environment as a user would set them."""
    if kind == "local":
        yield str(tmp_path / "art"), None
        return
    if kind in ("s3", "seaweedfs"):
        server: ObjectServer = request.getfixturevalue(
            "moto_s3_server" if kind == "s3" else "seaweedfs_server")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, server.env[name])
        async for bucket in new_bucket(server):
            yield f"s3://{bucket}/mlartifacts", server.endpoint
        return
    azurite: ObjectServer = request.getfixturevalue("azurite_server")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    async for container in new_container(azurite):
        yield f"wasbs://{container}@{AZURITE_ACCOUNT}.blob.core.windows.net/mlartifacts", None


@pytest.fixture(params=["local", "s3", "seaweedfs", "azure"])
async def make_client(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    aiohttp_client: MakeClient,
) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    gen = _destination(request.param, request, tmp_path, monkeypatch)
    destination, endpoint = await gen.__anext__()

    async def make(**kw: Any) -> Client:
        settings = Settings(backend_store_uri=f"sqlite:///{tmp_path}/m.db",
                            artifacts_destination=destination, s3_endpoint_url=endpoint,
                            artifact_part_size=5 * MIB, **kw)
        return await aiohttp_client(create_app(settings))

    yield make
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()


def _settings_key() -> Any:
    from gateway.keys import SETTINGS

    return SETTINGS


# -- integrity ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 7 * MIB])
async def test_sha256_header_round_trip(make_client: Callable[..., Awaitable[Client]],
                                        size: int) -> None:
    client = await make_client()
    data = os.urandom(size)
    good = hashlib.sha256(data).hexdigest()
    resp = await client.put(f"{A}/artifacts/1/r/artifacts/f.bin", data=io.BytesIO(data),
                            headers={SHA256_HEADER: good.upper()})
    assert resp.status == 200, await resp.text()
    resp = await client.get(f"{A}/artifacts/1/r/artifacts/f.bin")
    assert resp.status == 200
    assert resp.headers[SHA256_HEADER] == good
    assert await resp.read() == data
    # Without an announced digest the gateway still records one.
    resp = await client.put(f"{A}/artifacts/1/r/artifacts/g.bin", data=io.BytesIO(data))
    assert resp.status == 200
    resp = await client.get(f"{A}/artifacts/1/r/artifacts/g.bin",
                            headers={"Range": "bytes=10-19"})
    assert resp.status == 206
    assert resp.headers[SHA256_HEADER] == good
    assert await resp.read() == data[10:20]


@pytest.mark.parametrize("size", [1000, 7 * MIB])
async def test_checksum_mismatch_is_400_and_stores_nothing(
    make_client: Callable[..., Awaitable[Client]], size: int
) -> None:
    client = await make_client()
    resp = await client.put(f"{A}/artifacts/1/r/artifacts/f.bin",
                            data=io.BytesIO(os.urandom(size)), headers={SHA256_HEADER: "ab" * 32})
    assert resp.status == 400
    body = await resp.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "SHA-256" in body["message"]
    resp = await client.get(f"{A}/artifacts/1/r/artifacts/f.bin")
    assert resp.status == 404
    assert (await resp.json())["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    resp = await client.get(f"{A}/artifacts", params={"path": "1/r/artifacts"})
    assert await resp.json() == {}


async def test_malformed_checksum_header_is_400(
    make_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await make_client()
    resp = await client.put(f"{A}/artifacts/x.txt", data=b"x", headers={SHA256_HEADER: "nope"})
    assert resp.status == 400
    assert (await resp.json())["error_code"] == "INVALID_PARAMETER_VALUE"


# -- server-info and mpu -----------------------------------------------------------------


async def _server_info(client: Client) -> dict[str, Any]:
    resp = await client.get("/api/3.0/mlflow/server-info")
    assert resp.status == 200
    info: dict[str, Any] = await resp.json()
    return info


async def _mpu_round_trip(client: Client, parts: list[bytes]) -> dict[str, Any]:
    resp = await client.post(f"{A}/mpu/create/1/r/artifacts/sub",
                             json={"path": "/home/me/big.bin", "num_parts": len(parts)})
    assert resp.status == 200, await resp.text()
    create: dict[str, Any] = await resp.json()
    assert [c["part_number"] for c in create["credentials"]] == list(range(1, len(parts) + 1))
    etags = []
    for cred, data in zip(create["credentials"], parts, strict=True):
        # requests, in a thread, exactly as the mlflow client's _upload_part sends a part.
        part = await asyncio.to_thread(requests.put, cred["url"], data=data,
                                       headers=cred["headers"], timeout=60)
        assert part.status_code == 200, part.text
        etags.append(part.headers["ETag"])
    resp = await client.post(f"{A}/mpu/complete/1/r/artifacts/sub", json={
        "path": "/home/me/big.bin", "upload_id": create["upload_id"],
        "parts": [{"part_number": n, "etag": e, "url": c["url"]} for n, (e, c) in
                  enumerate(zip(etags, create["credentials"], strict=True), 1)]})
    assert resp.status == 200, await resp.text()
    return create


async def test_mpu_in_proxy_mode_goes_through_the_gateway(
    make_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await make_client()
    info = await _server_info(client)
    local = info["multipart_uploads_enabled"] is False
    parts = [os.urandom(5 * MIB), os.urandom(100)]
    if local:  # the local store: stock's 501, which makes the client fall back to a PUT
        assert info["multipart_downloads_enabled"] is False
        resp = await client.post(f"{A}/mpu/create/1/r", json={"path": "f", "num_parts": 1})
        assert resp.status == 501
        return
    assert info["multipart_downloads_enabled"] is False
    create = await _mpu_round_trip(client, parts)
    base = str(client.make_url(""))
    assert all(c["url"].startswith(base + f"{A}/mpu/upload/") for c in create["credentials"])
    resp = await client.get(f"{A}/artifacts/1/r/artifacts/sub/big.bin")
    assert resp.status == 200
    assert await resp.read() == b"".join(parts)
    resp = await client.get(f"{A}/presigned/1/r/artifacts/sub/big.bin")
    assert resp.status == 501
    # Behind a balancer that terminates TLS, the parts' URLs keep the client's scheme.
    resp = await client.post(f"{A}/mpu/create/1/r", json={"path": "g", "num_parts": 2},
                             headers={"X-Forwarded-Proto": "https"})
    assert resp.status == 200, await resp.text()
    urls = [c["url"] for c in (await resp.json())["credentials"]]
    https = "https" + base.removeprefix("http")
    assert all(u.startswith(f"{https}{A}/mpu/upload/") for u in urls), urls
    resp = await client.post(f"{A}/mpu/create/1/r", json={"path": "g", "num_parts": 1},
                             headers={"X-Forwarded-Proto": "javascript"})
    assert (await resp.json())["credentials"][0]["url"].startswith(base), "only http(s)"


async def test_mpu_abort_leaves_nothing(make_client: Callable[..., Awaitable[Client]]) -> None:
    client = await make_client()
    if not (await _server_info(client))["multipart_uploads_enabled"]:
        return  # covered by test_mpu_in_proxy_mode_goes_through_the_gateway
    resp = await client.post(f"{A}/mpu/create/d", json={"path": "f.bin", "num_parts": 2})
    create = await resp.json()
    async with aiohttp.ClientSession() as session:
        cred = create["credentials"][0]
        async with session.put(cred["url"], data=io.BytesIO(os.urandom(MIB))) as part:
            assert part.status == 200
    resp = await client.post(f"{A}/mpu/abort/d",
                             json={"path": "f.bin", "upload_id": create["upload_id"]})
    assert resp.status == 200
    assert await (await client.get(f"{A}/artifacts", params={"path": "d"})).json() == {}


async def test_mpu_off_reports_and_answers_unsupported(
    make_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await make_client(artifact_multipart="off")
    info = await _server_info(client)
    assert (info["multipart_uploads_enabled"], info["multipart_downloads_enabled"]) == (
        False, False)
    resp = await client.post(f"{A}/mpu/create/1/r", json={"path": "f", "num_parts": 1})
    assert resp.status == 501
    assert (await resp.json())["message"].startswith("Multipart upload is not supported")


async def test_presigned_mode(make_client: Callable[..., Awaitable[Client]]) -> None:
    client = await make_client(artifact_multipart="presigned")
    info = await _server_info(client)
    destination = client.server.app[_settings_key()].artifacts_destination
    if not destination.startswith("s3://"):
        # Azure has no presigned URLs here (no SAS); local has no multipart at all.
        assert info["multipart_downloads_enabled"] is False
        return
    assert info == {**info, "multipart_uploads_enabled": True,
                    "multipart_downloads_enabled": True}
    parts = [os.urandom(5 * MIB), os.urandom(10)]
    create = await _mpu_round_trip(client, parts)
    assert all("X-Amz-Signature=" in c["url"] or "Signature=" in c["url"]
               for c in create["credentials"])
    resp = await client.get(f"{A}/presigned/1/r/artifacts/sub/big.bin")
    assert resp.status == 200
    presigned = await resp.json()
    assert presigned["file_size"] == sum(map(len, parts))
    async with aiohttp.ClientSession() as session, session.get(
        URL(presigned["url"], encoded=True)
    ) as direct:
        assert direct.status == 200
        assert await direct.read() == b"".join(parts)


# -- object-store failures ---------------------------------------------------------------


async def test_unreachable_s3_is_unavailable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = open_artifact_store("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{port}",
                                aws_access_key_id="k", aws_secret_access_key="s")
    with pytest.raises(errors.Unavailable):
        await asyncio.wait_for(store.open(), 60)
    await store.aclose()


async def test_unreachable_azure_is_unavailable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")
    store = open_artifact_store("azure://container/p", connection_string=conn)
    with pytest.raises(errors.Unavailable):
        await asyncio.wait_for(store.open(), 40)
    await store.aclose()


async def test_s3_access_denied_names_the_bucket_not_the_secret(
    seaweedfs_server: ObjectServer,
) -> None:
    async for bucket in new_bucket(seaweedfs_server):
        store = S3ArtifactStore.from_uri(
            f"s3://{bucket}/p", endpoint_url=seaweedfs_server.endpoint,
            aws_access_key_id=seaweedfs_server.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key="wrong-secret-value")
        with pytest.raises(errors.BackendError) as caught:
            await store.open()
        await store.aclose()
        message = str(caught.value)
        assert bucket in message and "denied" in message
        assert "wrong-secret-value" not in message
        assert not isinstance(caught.value, (errors.NotFound, errors.Unavailable))


async def test_missing_object_is_404(make_client: Callable[..., Awaitable[Client]]) -> None:
    client = await make_client()
    resp = await client.get(f"{A}/artifacts/1/nothing/here.bin")
    assert resp.status == 404
    assert (await resp.json())["error_code"] == "RESOURCE_DOES_NOT_EXIST"
