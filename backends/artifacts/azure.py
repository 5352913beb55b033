"""Artifacts in an Azure Blob Storage container, on azure-storage-blob's aio client.

URI: ``wasbs://container@account.blob.core.windows.net/prefix`` (``wasb://`` too, as in
MLflow), or the short forms ``azure://container/prefix`` and ``az://container/prefix``
whose account comes from the connection string. Credentials are found as MLflow finds
them: the ``connection_string`` option, else ``AZURE_STORAGE_CONNECTION_STRING``, else
``AZURE_STORAGE_ACCESS_KEY`` with the account of a ``wasbs://`` URI (endpoint
``https://<account>.blob.core.windows.net``, or ``MLGATE_AZURE_BLOB_ENDPOINT``), else
azure-identity's ``DefaultAzureCredential`` when that package is installed.

A body of one block or less is one Put Blob. A longer one streams as staged blocks of
``block_size`` bytes (at most ``upload_concurrency`` in flight) followed by one Put Block
List, noted in the store's ledger while it runs. Uncommitted blocks are never visible; a
failed or interrupted upload of a new blob deletes the blob entry, which discards its
uncommitted blocks at once, and the sweep does the same for a process that died mid-upload
(over an existing blob they are left to Azure's one-week garbage collection: discarding
them would mean rewriting the committed blob). The SHA-256
of the body, computed while it streams, is committed with the block list as the blob's
metadata ``mlgate_sha256``. Downloads are ranged reads streamed chunk by chunk.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Self
from urllib.parse import urlsplit

from backends.artifacts.base import (
    ArtifactStore,
    ByteStream,
    ChecksumMismatch,
    FileInfo,
    Leftover,
    UploadedPart,
)
from backends.errors import BackendError, InvalidArgument, NotFound, Unavailable
from backends.registry import AZURE_SCHEMES

__all__ = ["AzureArtifactStore"]

log = logging.getLogger("mlgate.artifacts.azure")

MIB = 1024 * 1024
DEFAULT_BLOCK_SIZE = 8 * MIB
DEFAULT_UPLOAD_CONCURRENCY = 2
READ_CHUNK = 4 * MIB  # one ranged GET; the SDK's first GET is otherwise 32 MiB
YIELD_CHUNK = MIB
MAX_PROXIED_PART = 512 * MIB
SHA256_META = "mlgate_sha256"


def _block_id(upload_id: str, number: int) -> str:
    # Every block id of a blob must have the same length: fixed-width numbers.
    return base64.b64encode(f"{upload_id}-{number:06d}".encode()).decode()


class _AzureByteStream(ByteStream):
    def __init__(self, size: int, offset: int, length: int, sha256: str | None,
                 downloader: Any) -> None:
        self.size, self.offset, self.length, self.sha256 = size, offset, length, sha256
        self._downloader = downloader

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._downloader is None:
            return
        received = 0
        async for chunk in self._downloader.chunks():
            received += len(chunk)
            view = memoryview(chunk)
            for start in range(0, len(view), YIELD_CHUNK):
                yield bytes(view[start:start + YIELD_CHUNK])
        if received != self.length:
            raise Unavailable("The object store ended the download early")


class AzureArtifactStore(ArtifactStore):
    """A prefix of one blob container (see the module docstring)."""

    supports_multipart = True
    supports_presigned = False

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        account: str | None = None,
        connection_string: str | None = None,
        access_key: str | None = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
        api_version: str | None = None,
    ) -> None:
        if block_size < 1 or upload_concurrency < 1:
            raise ValueError("block_size and upload_concurrency must be positive")
        self.container = container
        self.prefix = prefix.strip("/")
        self.account = account
        self.block_size = block_size
        self.upload_concurrency = upload_concurrency
        self._connection_string = connection_string
        self._access_key = access_key
        self._api_version = api_version
        self._service: Any = None
        self._client: Any = None  # ContainerClient

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> Self:
        known = {"connection_string", "access_key", "block_size", "part_size",
                 "upload_concurrency", "api_version", "endpoint_url"}
        if set(options) - known:
            raise TypeError(
                f"unknown options for the Azure artifact store: {sorted(set(options) - known)}")
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme not in AZURE_SCHEMES or not parts.netloc:
            raise ValueError(f"{uri!r} is not a wasbs://container@account.blob.core.windows.net/"
                             "prefix or azure://container/prefix URI")
        account = None
        if scheme in ("wasbs", "wasb"):
            container, at, host = parts.netloc.partition("@")
            if not at or not container or not host:
                raise ValueError(
                    f"{uri!r}: expected wasbs://container@account.blob.core.windows.net/prefix")
            account = host.split(".", 1)[0]
        else:
            container = parts.netloc
        if not 3 <= len(container) <= 63:
            raise ValueError(f"{uri!r}: container names have 3 to 63 characters")
        return cls(
            container, parts.path, account=account,
            connection_string=options.get("connection_string")
            or os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or None,
            access_key=options.get("access_key")
            or os.environ.get("AZURE_STORAGE_ACCESS_KEY") or None,
            block_size=int(options.get("block_size") or options.get("part_size")
                           or DEFAULT_BLOCK_SIZE),
            upload_concurrency=int(options.get("upload_concurrency")
                                   or DEFAULT_UPLOAD_CONCURRENCY),
            api_version=options.get("api_version") or None,
        )

    def __repr__(self) -> str:
        return f"AzureArtifactStore(container={self.container!r}, prefix={self.prefix!r})"

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        kwargs: dict[str, Any] = {"max_single_get_size": READ_CHUNK,
                                  "max_chunk_get_size": READ_CHUNK}
        if self._api_version:
            kwargs["api_version"] = self._api_version
        if self._connection_string:
            self._service = BlobServiceClient.from_connection_string(
                self._connection_string, **kwargs)
        elif self.account:
            endpoint = (os.environ.get("MLGATE_AZURE_BLOB_ENDPOINT")
                        or f"https://{self.account}.blob.core.windows.net")
            credential: Any
            if self._access_key:
                credential = {"account_name": self.account, "account_key": self._access_key}
            else:
                try:
                    from azure.identity.aio import (  # type: ignore[import-untyped]
                        DefaultAzureCredential,
                    )
                except ImportError:
                    raise BackendError(
                        "No Azure credentials: set AZURE_STORAGE_CONNECTION_STRING or "
                        "AZURE_STORAGE_ACCESS_KEY (or install azure-identity)") from None
                credential = DefaultAzureCredential()
            self._service = BlobServiceClient(endpoint, credential=credential, **kwargs)
        else:
            raise BackendError(
                f"No Azure account for container '{self.container}': use a wasbs:// URI or "
                "set AZURE_STORAGE_CONNECTION_STRING")
        self._client = self._service.get_container_client(self.container)
        async with self._translating(""):
            # One retry at start-up (15 s), not the SDK's three (~60 s): a wrong endpoint
            # should stop the server while its operator still watches.
            await self._client.get_container_properties(retry_total=1)

    async def aclose(self) -> None:
        service, self._service = self._service, None
        self._client = None
        if service is not None:
            await service.close()

    # -- helpers ------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        if not path:
            return self.prefix
        return f"{self.prefix}/{path}" if self.prefix else path

    def _dir_prefix(self, path: str) -> str:
        key = self._key(path)
        return f"{key}/" if key else ""

    def _blob(self, path: str) -> Any:
        return self._client.get_blob_client(self._key(path))

    @asynccontextmanager
    async def _translating(self, path: str) -> AsyncIterator[None]:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            yield
        except ResourceNotFoundError as exc:
            code = getattr(exc, "error_code", None)
            if code == "ContainerNotFound":
                raise BackendError(
                    f"The artifacts container '{self.container}' does not exist") from exc
            raise NotFound(f"No such artifact: '{path}'") from exc
        except ClientAuthenticationError as exc:
            raise BackendError(
                f"Access to the artifacts container '{self.container}' was denied; check the "
                "server's Azure credentials") from exc
        except (ServiceRequestError, ServiceResponseError, TimeoutError, OSError) as exc:
            raise Unavailable(
                f"The artifact store for container '{self.container}' cannot be reached"
            ) from exc
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 403:
                raise BackendError(
                    f"Access to the artifacts container '{self.container}' was denied "
                    f"({getattr(exc, 'error_code', None)}); check the server's Azure credentials") from exc
            if status in (500, 502, 503, 504):
                raise Unavailable(
                    f"The artifacts container '{self.container}' is unavailable right now"
                ) from exc
            raise

    async def _has_children(self, path: str) -> bool:
        async with self._translating(path):
            async for _ in self._client.list_blobs(
                name_starts_with=self._dir_prefix(path), results_per_page=1
            ):
                return True
        return False

    async def _props(self, path: str) -> Any | None:
        try:
            async with self._translating(path):
                return await self._blob(path).get_blob_properties()
        except NotFound:
            return None

    # -- writing ------------------------------------------------------------------------

    async def put(
        self, path: str, chunks: AsyncIterable[bytes], *, sha256: str | None = None
    ) -> int:
        if not path:
            raise InvalidArgument("Artifact path must name a file")
        if await self._has_children(path):
            raise InvalidArgument(f"Artifact path refers to a directory: '{path}'")
        expected = sha256.lower() if sha256 else None
        blob = self._blob(path)
        upload_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256()
        tasks: set[asyncio.Task[None]] = set()
        block_ids: list[str] = []
        buffer: list[bytes] = []
        buffered = total = 0
        committed = False
        noted: str | None = None  # the ledger's id once blocks may be staged

        async def stage(block_id: str, data: bytes) -> None:
            async with self._translating(path):
                await blob.stage_block(block_id, io.BytesIO(data), length=len(data))

        async def flush(data: bytes) -> None:
            nonlocal noted
            await loop.run_in_executor(None, digest.update, data)
            if noted is None:
                noted = await self.ledger.begin(path)
            block_id = _block_id(upload_id, len(block_ids) + 1)
            block_ids.append(block_id)
            tasks.add(asyncio.create_task(stage(block_id, data)))
            if len(tasks) >= self.upload_concurrency:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    tasks.discard(task)
                    task.result()

        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                buffer.append(chunk)
                buffered += len(chunk)
                total += len(chunk)
                while buffered >= self.block_size:
                    data = b"".join(buffer)
                    buffer = [data[self.block_size:]] if len(data) > self.block_size else []
                    buffered = len(data) - self.block_size
                    await flush(data[: self.block_size])
            if not block_ids:
                # One block's worth or less: a single Put Blob, nothing staged.
                data = b"".join(buffer)
                actual = await loop.run_in_executor(None, _sha256, data)
                if expected is not None and actual != expected:
                    raise ChecksumMismatch(_mismatch(actual, expected))
                from azure.storage.blob import ContentSettings

                async with self._translating(path):
                    await blob.upload_blob(
                        data, overwrite=True, metadata={SHA256_META: actual},
                        content_settings=ContentSettings(
                            content_type="application/octet-stream"))
                committed = True
                return total
            if buffer:
                await flush(b"".join(buffer))
                buffer = []
            while tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    tasks.discard(task)
                    task.result()
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                raise ChecksumMismatch(_mismatch(actual, expected))
            from azure.storage.blob import BlobBlock, ContentSettings

            async with self._translating(path):
                await blob.commit_block_list(
                    [BlobBlock(block_id=b) for b in block_ids],
                    metadata={SHA256_META: actual},
                    content_settings=ContentSettings(content_type="application/octet-stream"))
            committed = True
            return total
        finally:
            if not committed and block_ids:
                # Let staged blocks in flight land first: one cut off on our side may still
                # be written by the service after the discard.
                await _shielded(self._discard_uncommitted(path, set(tasks)))
            if noted is not None:
                await _shielded(self.ledger.end(noted))

    async def _discard_uncommitted(
        self, path: str, in_flight: set[asyncio.Task[None]] | None = None
    ) -> None:
        """Drop the uncommitted blocks of ``path`` when no committed blob is there: deleting
        the blob entry removes them. An existing blob is left alone."""
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        try:
            if await self._props(path) is not None:
                return
            async with self._translating(path):
                await self._blob(path).delete_blob()
        except NotFound:
            pass
        except Exception:
            log.warning("could not discard the staged blocks of %r", path, exc_info=True)

    # -- reading ------------------------------------------------------------------------

    def get(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AbstractAsyncContextManager[ByteStream]:
        return self._get(path, offset, length)

    @asynccontextmanager
    async def _get(self, path: str, offset: int, length: int | None) -> AsyncIterator[ByteStream]:
        props = await self._props(path) if path else None
        if props is None:
            if not path or await self._has_children(path):
                raise InvalidArgument(f"Artifact path refers to a directory: '{path}'")
            raise NotFound(f"No such artifact: '{path}'")
        size = int(props.size)
        if offset < 0 or offset > size:
            raise InvalidArgument(f"Offset {offset} is outside '{path}' ({size} bytes)")
        if length is not None and length < 0:
            raise InvalidArgument("length must not be negative")
        count = size - offset if length is None else min(length, size - offset)
        digest = (props.metadata or {}).get(SHA256_META)
        if count == 0:
            yield _AzureByteStream(size, offset, 0, digest, None)
            return
        async with self._translating(path):
            downloader = await self._blob(path).download_blob(
                offset=offset, length=count, etag=props.etag,
                match_condition=_if_match(), max_concurrency=1)
        async with self._translating(path):
            yield _AzureByteStream(size, offset, count, digest, downloader)

    # -- metadata -----------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo | None:
        if path:
            props = await self._props(path)
            if props is not None:
                return FileInfo(path, False, int(props.size))
        if not path or await self._has_children(path):
            return FileInfo(path, True, None)
        return None

    async def iter_dir(self, path: str) -> AsyncIterator[FileInfo]:
        prefix = self._dir_prefix(path)
        async with self._translating(path):
            pages = self._client.walk_blobs(name_starts_with=prefix, delimiter="/").by_page()
            async for page in pages:
                infos: list[FileInfo] = []
                async for item in page:
                    name = item.name[len(prefix):]
                    is_dir = name.endswith("/")
                    name = name.rstrip("/")
                    if not name or "/" in name:
                        continue
                    child = f"{path}/{name}" if path else name
                    infos.append(FileInfo(child, True, None) if is_dir
                                 else FileInfo(child, False, int(item.size)))
                infos.sort(key=lambda info: info.path)
                for info in infos:
                    yield info

    # -- deleting -----------------------------------------------------------------------

    async def delete(self, path: str) -> None:
        if not path:
            raise InvalidArgument("Refusing to delete the root of the artifact store")
        deleted = 0
        if await self._props(path) is not None:
            async with self._translating(path):
                await self._blob(path).delete_blob()
            deleted += 1
        async with self._translating(path):
            pages = self._client.list_blobs(name_starts_with=self._dir_prefix(path)).by_page()
            async for page in pages:  # one page of names at a time
                names = [item.name async for item in page]
                for start in range(0, len(names), 256):
                    batch = names[start:start + 256]
                    await asyncio.gather(*(self._delete_blob(name) for name in batch))
                deleted += len(names)
        if not deleted:
            raise NotFound(f"No such artifact: '{path}'")

    async def _delete_blob(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await self._client.delete_blob(name)
        except ResourceNotFoundError:
            pass  # deleted meanwhile

    # -- multipart (mpu/*): blocks staged per part, committed in part order --------------

    async def create_multipart(self, path: str) -> str:
        if await self._has_children(path):
            raise InvalidArgument(f"Artifact path refers to a directory: '{path}'")
        return await self.ledger.begin(path, uuid.uuid4().hex, owned=False)

    async def put_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes]
    ) -> UploadedPart:
        if not 1 <= part_number <= 50000:
            raise InvalidArgument("part_number must be between 1 and 50000")
        _check_upload_id(upload_id)
        buffer: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_PROXIED_PART:
                raise InvalidArgument(
                    f"A part may be at most {MAX_PROXIED_PART // MIB} MiB through the gateway")
            buffer.append(chunk)
        block_id = _block_id(upload_id, part_number)
        data = b"".join(buffer)
        async with self._translating(path):
            await self._blob(path).stage_block(block_id, io.BytesIO(data), length=len(data))
        return UploadedPart(part_number, f'"{block_id}"')

    async def complete_multipart(
        self, path: str, upload_id: str, parts: list[UploadedPart]
    ) -> None:
        from azure.storage.blob import BlobBlock

        _check_upload_id(upload_id)
        numbers = sorted({p.part_number for p in parts})
        async with self._translating(path):
            await self._blob(path).commit_block_list(
                [BlobBlock(block_id=_block_id(upload_id, n)) for n in numbers])
        await self.ledger.end(upload_id)

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        _check_upload_id(upload_id)
        await self._discard_uncommitted(path)
        await self.ledger.end(upload_id)

    # -- leftovers ----------------------------------------------------------------------

    async def _uncommitted_only(self, path: str) -> bool:
        """Whether ``path`` has staged blocks and no committed blob."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            async with self._translating(path):
                committed, uncommitted = await self._blob(path).get_block_list("all")
        except (NotFound, ResourceNotFoundError):
            return False
        return bool(uncommitted) and not committed

    async def leftovers(self, noted: Collection[str] = (), *, full: bool = False
                        ) -> AsyncIterator[Leftover]:
        # Listing blobs with uncommitted blocks walks every blob under the prefix, so only a
        # full sweep does it; otherwise the noted paths are looked at one by one.
        if full:
            prefix = self._dir_prefix("")
            async with self._translating(""):
                async for item in self._client.list_blobs(
                    name_starts_with=prefix, include=["uncommittedblobs"]
                ):
                    # Uncommitted-only blobs list with size 0; committed empty ones too.
                    path = item.name[len(prefix):]
                    if item.size == 0 and await self._uncommitted_only(path):
                        started = item.creation_time or item.last_modified
                        yield Leftover("uncommitted blocks", path,
                                       int(started.timestamp() * 1000) if started else None)
            return
        for path in sorted(set(noted)):
            if await self._uncommitted_only(path):
                yield Leftover("uncommitted blocks", path, None)

    async def discard(self, leftover: Leftover) -> None:
        await self._discard_uncommitted(leftover.path)

    async def all_uncommitted_blobs(self) -> int:
        """How many blobs under the prefix have uncommitted blocks (tests, operators)."""
        from azure.core.exceptions import ResourceNotFoundError

        count = 0
        async with self._translating(""):
            async for item in self._client.list_blobs(
                name_starts_with=self._dir_prefix(""), include=["uncommittedblobs"]
            ):
                try:
                    _committed, uncommitted = await self._client.get_blob_client(
                        item.name).get_block_list("uncommitted")
                except ResourceNotFoundError:
                    continue  # discarded between the listing and this look
                count += bool(uncommitted)
        return count

    async def uncommitted_blocks(self, path: str) -> int:
        """How many uncommitted blocks ``path`` has (for tests and operators)."""
        try:
            async with self._translating(path):
                _committed, uncommitted = await self._blob(path).get_block_list("uncommitted")
        except NotFound:
            return 0
        return len(uncommitted)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mismatch(actual: str, expected: str) -> str:
    return f"SHA-256 of the uploaded bytes is {actual}, the client announced {expected}"


def _check_upload_id(upload_id: str) -> None:
    if len(upload_id) != 32 or any(c not in "0123456789abcdef" for c in upload_id):
        raise InvalidArgument("Unknown upload_id")


def _if_match() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


async def _shielded(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
