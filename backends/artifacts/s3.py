"""Artifacts in an S3 bucket (AWS, SeaweedFS, MinIO, moto…), on aiobotocore.

URI: ``s3://bucket/prefix`` (the prefix may be empty). Endpoint and credentials are found
the way MLflow finds them: ``endpoint_url`` option, else ``MLFLOW_S3_ENDPOINT_URL``; keys
from botocore's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``…),
region from ``AWS_DEFAULT_REGION``/``AWS_REGION``. ``MLFLOW_S3_IGNORE_TLS=true`` turns TLS
verification off, as in MLflow. A custom endpoint uses path-style addressing.

Uploads stream: the body is cut into parts of ``part_size`` bytes; a body shorter than one
part is a single PutObject, a longer one a multipart upload with at most
``upload_concurrency`` parts in flight, so memory stays at about
``part_size × (upload_concurrency + 1)``. Any failure or cancellation aborts the multipart
upload, so no partial object ever becomes visible. The SHA-256 of the body is computed as
it streams: a single PUT carries it as user metadata ``x-amz-meta-mlgate-sha256``; a
multipart upload carries it in metadata when the client announced it beforehand (checked
before completing), otherwise it is set as the object tag ``mlgate-sha256`` right after
completion. Downloads are ranged GETs read in chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
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

__all__ = ["S3ArtifactStore"]

log = logging.getLogger("mlgate.artifacts.s3")

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_UPLOAD_CONCURRENCY = 2
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
READ_CHUNK = 1024 * 1024
# A part PUT through the gateway (mpu/*) is buffered whole to give S3 its length.
MAX_PROXIED_PART = 512 * MIB
SHA256_META = "mlgate-sha256"

_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "AllAccessDisabled", "AccountProblem", "InvalidToken", "ExpiredToken"}
_UNAVAILABLE = {"SlowDown", "ServiceUnavailable", "503", "500", "InternalError",
                "RequestTimeout", "RequestTimeTooSkewed"}


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def _is_not_found(exc: BaseException) -> bool:
    return _error_code(exc) in _NOT_FOUND


class _S3ByteStream(ByteStream):
    def __init__(self, size: int, offset: int, length: int, sha256: str | None,
                 body: Any) -> None:
        self.size, self.offset, self.length, self.sha256 = size, offset, length, sha256
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._body is None:
            return
        received = 0
        async for chunk in self._body.iter_chunks(READ_CHUNK):
            received += len(chunk)
            yield chunk
        if received != self.length:
            raise Unavailable("The object store ended the download early")


class S3ArtifactStore(ArtifactStore):
    """A prefix of one S3 bucket (see the module docstring)."""

    supports_multipart = True
    supports_presigned = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
        client: Any = None,
        credentials: dict[str, str] | None = None,
        region_name: str | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if upload_concurrency < 1:
            raise ValueError("upload_concurrency must be at least 1")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        self._client = client
        self._credentials = credentials or {}  # empty: botocore's chain (AWS_* env…)
        self._region = region_name
        self._stack: AsyncExitStack | None = None

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> Self:
        parts = urlsplit(uri)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
        known = {"endpoint_url", "part_size", "upload_concurrency", "client",
                 "aws_access_key_id", "aws_secret_access_key", "region_name"}
        if set(options) - known:
            raise TypeError(f"unknown options for the S3 artifact store: {sorted(set(options) - known)}")
        endpoint = options.get("endpoint_url") or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
        return cls(
            parts.netloc, parts.path,
            endpoint_url=endpoint,
            part_size=int(options.get("part_size") or DEFAULT_PART_SIZE),
            upload_concurrency=int(options.get("upload_concurrency") or DEFAULT_UPLOAD_CONCURRENCY),
            client=options.get("client"),
            credentials={k: options[k] for k in ("aws_access_key_id", "aws_secret_access_key")
                         if options.get(k)},
            region_name=options.get("region_name"),
        )

    def __repr__(self) -> str:
        return f"S3ArtifactStore('s3://{self.bucket}/{self.prefix}')"

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            config = AioConfig(
                s3={"addressing_style": "path"} if self.endpoint_url else {},
                max_pool_connections=max(10, self.upload_concurrency * 2),
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=120,
                # Our own SHA-256 covers integrity; botocore's CRC trailers would add a
                # second pass over every byte and are not understood by every S3 clone.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            verify = os.environ.get("MLFLOW_S3_IGNORE_TLS", "").lower() not in ("true", "1")
            self._stack = AsyncExitStack()
            session = get_session()
            self._client = await self._stack.enter_async_context(session.create_client(
                "s3", endpoint_url=self.endpoint_url, config=config, verify=verify,
                region_name=self._region or os.environ.get("AWS_DEFAULT_REGION")
                or os.environ.get("AWS_REGION") or "us-east-1",
                **self._credentials,
            ))
        async with self._translating(""):
            await self._client.head_bucket(Bucket=self.bucket)

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
            self._client = None

    # -- helpers ------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        if not path:
            return self.prefix
        return f"{self.prefix}/{path}" if self.prefix else path

    def _dir_prefix(self, path: str) -> str:
        key = self._key(path)
        return f"{key}/" if key else ""

    @asynccontextmanager
    async def _translating(self, path: str) -> AsyncIterator[None]:
        """Driver errors → backend errors. Messages name the bucket and path, never keys."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            ReadTimeoutError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        try:
            yield
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND:
                raise NotFound(f"No such artifact: '{path}'") from exc
            if code == "NoSuchBucket":
                raise BackendError(
                    f"The artifacts bucket '{self.bucket}' does not exist") from exc
            if code in _DENIED:
                raise BackendError(
                    f"Access to the artifacts bucket '{self.bucket}' was denied ({code}); "
                    "check the server's S3 credentials and bucket policy") from exc
            if code in _UNAVAILABLE:
                raise Unavailable(
                    f"The artifacts bucket '{self.bucket}' is unavailable right now ({code})"
                ) from exc
            raise
        except (TimeoutError, BotoConnectionError, ReadTimeoutError) as exc:
            raise Unavailable(
                f"The artifact store for bucket '{self.bucket}' cannot be reached") from exc
        except NoCredentialsError as exc:
            raise BackendError(
                f"No S3 credentials are configured for the artifacts bucket '{self.bucket}'"
            ) from exc
        except BotoCoreError as exc:
            # The rest of botocore's own errors are network trouble in practice
            # (ResponseStreamingError, HTTPClientError…).
            raise Unavailable(
                f"The artifact store for bucket '{self.bucket}' failed: {type(exc).__name__}"
            ) from exc
        except OSError as exc:  # aiohttp connection errors that escape botocore
            raise Unavailable(
                f"The artifact store for bucket '{self.bucket}' cannot be reached") from exc

    async def _has_children(self, path: str) -> bool:
        async with self._translating(path):
            resp = await self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=self._dir_prefix(path), MaxKeys=1)
        return bool(resp.get("KeyCount") or resp.get("Contents"))

    async def _head(self, path: str) -> dict[str, Any] | None:
        try:
            async with self._translating(path):
                head: dict[str, Any] = await self._client.head_object(
                    Bucket=self.bucket, Key=self._key(path))
                return head
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
        key = self._key(path)
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256()
        buffer = bytearray()  # at most one part plus one chunk
        total = 0
        iterator = chunks.__aiter__()
        upload_id: str | None = None
        noted: str | None = None  # the ledger's id while a multipart upload may exist
        tasks: dict[int, asyncio.Task[str]] = {}
        etags: dict[int, str] = {}
        part_number = 0

        async def fill() -> bytes | None:
            """The next part's bytes, or ``None`` at the end of the body."""
            nonlocal total
            while len(buffer) < self.part_size:
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                buffer.extend(chunk)
                total += len(chunk)
            if not buffer:
                return None
            # One copy per part; parts are exactly part_size, the tail stays buffered.
            data = bytes(memoryview(buffer)[: self.part_size])
            del buffer[: self.part_size]
            # hashlib releases the GIL on big buffers: hash off the event loop.
            await loop.run_in_executor(None, digest.update, data)
            return data

        async def send_part(number: int, data: bytes) -> str:
            async with self._translating(path):
                resp = await self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    Body=data)
            return str(resp["ETag"])

        async def at_end() -> bool:
            """After exactly one full part: is the body finished? (Peeks one chunk.)"""
            nonlocal total
            async for chunk in iterator:
                if chunk:
                    buffer.extend(chunk)
                    total += len(chunk)
                    return False
            return True

        try:
            first = await fill()
            single = first is None or len(first) < self.part_size
            if not single and not buffer:
                single = await at_end()
            if single:
                # One part's worth or less: a single PutObject.
                data = first or b""
                actual = digest.hexdigest()
                if expected is not None and actual != expected:
                    raise ChecksumMismatch(_mismatch(actual, expected))
                async with self._translating(path):
                    await self._client.put_object(
                        Bucket=self.bucket, Key=key, Body=data,
                        Metadata={SHA256_META: actual})
                return total
            noted = await self.ledger.begin(path)
            async with self._translating(path):
                created = await self._client.create_multipart_upload(
                    Bucket=self.bucket, Key=key,
                    **({"Metadata": {SHA256_META: expected}} if expected else {}))
            upload_id = str(created["UploadId"])
            data_or_none: bytes | None = first
            del first  # the task below holds the only reference while it sends
            while data_or_none is not None:
                part_number += 1
                tasks[part_number] = asyncio.create_task(send_part(part_number, data_or_none))
                del data_or_none
                if len(tasks) >= self.upload_concurrency:
                    done, _ = await asyncio.wait(tasks.values(),
                                                 return_when=asyncio.FIRST_COMPLETED)
                    for number in [n for n, t in tasks.items() if t in done]:
                        etags[number] = tasks.pop(number).result()
                data_or_none = await fill()
            for number, task in list(tasks.items()):
                etags[number] = await task
                del tasks[number]
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                raise ChecksumMismatch(_mismatch(actual, expected))
            async with self._translating(path):
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": [
                        {"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]})
            upload_id = None
            if expected is None:
                await self._tag_sha256(path, actual)
            return total
        finally:
            if upload_id is not None:
                # Parts in flight finish first: S3 may keep a part that was still being
                # written when the abort arrived.
                await _shielded(self._abort(key, upload_id, set(tasks.values())))
            if noted is not None:
                await _shielded(self.ledger.end(noted))

    async def _tag_sha256(self, path: str, digest: str) -> None:
        try:
            async with self._translating(path):
                await self._client.put_object_tagging(
                    Bucket=self.bucket, Key=self._key(path),
                    Tagging={"TagSet": [{"Key": SHA256_META, "Value": digest}]})
        except Exception:
            # The object is complete and stays; only its checksum label is missing.
            log.warning("could not tag %r with its SHA-256", path, exc_info=True)

    async def _abort(
        self, key: str, upload_id: str, in_flight: set[asyncio.Task[str]] | None = None
    ) -> None:
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        try:
            await self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as exc:
            if not _is_not_found(exc):
                log.warning("could not abort multipart upload of %r", key, exc_info=True)

    # -- reading ------------------------------------------------------------------------

    def get(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AbstractAsyncContextManager[ByteStream]:
        return self._get(path, offset, length)

    @asynccontextmanager
    async def _get(self, path: str, offset: int, length: int | None) -> AsyncIterator[ByteStream]:
        head = await self._head(path) if path else None
        if head is None:
            if not path or await self._has_children(path):
                raise InvalidArgument(f"Artifact path refers to a directory: '{path}'")
            raise NotFound(f"No such artifact: '{path}'")
        size = int(head["ContentLength"])
        if offset < 0 or offset > size:
            raise InvalidArgument(f"Offset {offset} is outside '{path}' ({size} bytes)")
        if length is not None and length < 0:
            raise InvalidArgument("length must not be negative")
        count = size - offset if length is None else min(length, size - offset)
        digest = head.get("Metadata", {}).get(SHA256_META) or await self._tagged_sha256(path)
        if count == 0:
            yield _S3ByteStream(size, offset, 0, digest, None)
            return
        async with self._translating(path):
            resp = await self._client.get_object(
                Bucket=self.bucket, Key=self._key(path), IfMatch=head["ETag"],
                Range=f"bytes={offset}-{offset + count - 1}")
        body = resp["Body"]
        try:
            async with self._translating(path):
                yield _S3ByteStream(size, offset, count, digest, body)
        finally:
            body.close()

    async def _tagged_sha256(self, path: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            async with self._translating(path):
                resp = await self._client.get_object_tagging(
                    Bucket=self.bucket, Key=self._key(path))
        except (BackendError, ClientError):  # ClientError: a store without tagging
            return None
        for tag in resp.get("TagSet", []):
            if tag.get("Key") == SHA256_META:
                return str(tag.get("Value"))
        return None

    # -- metadata -----------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo | None:
        if path:
            head = await self._head(path)
            if head is not None:
                return FileInfo(path, False, int(head["ContentLength"]))
        if not path or await self._has_children(path):
            return FileInfo(path, True, None)
        return None

    async def iter_dir(self, path: str) -> AsyncIterator[FileInfo]:
        prefix = self._dir_prefix(path)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            async with self._translating(path):
                resp = await self._client.list_objects_v2(**kwargs)
            page: list[FileInfo] = []
            dirs = []
            for common in resp.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix):].rstrip("/")
                if name and "/" not in name:
                    dirs.append(FileInfo(f"{path}/{name}" if path else name, True, None))
            # Filer-backed servers (SeaweedFS) keep a folder after its last object is
            # deleted and list it as a prefix; a directory here is one with objects below.
            present = await asyncio.gather(*(self._has_children(d.path) for d in dirs))
            page.extend(d for d, ok in zip(dirs, present, strict=True) if ok)
            for obj in resp.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if name and "/" not in name:  # skip "dir/" markers
                    page.append(FileInfo(f"{path}/{name}" if path else name, False,
                                         int(obj["Size"])))
            page.sort(key=lambda info: info.path)
            for info in page:
                yield info
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                return

    # -- deleting -----------------------------------------------------------------------

    async def delete(self, path: str) -> None:
        if not path:
            raise InvalidArgument("Refusing to delete the root of the artifact store")
        deleted = 0
        if await self._head(path) is not None:
            async with self._translating(path):
                await self._client.delete_object(Bucket=self.bucket, Key=self._key(path))
            deleted += 1
        prefix = self._dir_prefix(path)
        token: str | None = None
        while True:  # one page of keys at a time, deleted in one request each
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            async with self._translating(path):
                resp = await self._client.list_objects_v2(**kwargs)
                keys = [{"Key": obj["Key"]} for obj in resp.get("Contents", [])]
                if keys:
                    result = await self._client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    if result.get("Errors"):
                        raise BackendError(
                            f"Could not delete {len(result['Errors'])} objects under '{path}'")
            deleted += len(keys)
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                break
        if not deleted:
            raise NotFound(f"No such artifact: '{path}'")

    # -- multipart (mpu/*) --------------------------------------------------------------

    async def create_multipart(self, path: str) -> str:
        if await self._has_children(path):
            raise InvalidArgument(f"Artifact path refers to a directory: '{path}'")
        async with self._translating(path):
            created = await self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self._key(path))
        upload_id = str(created["UploadId"])
        try:
            await self.ledger.begin(path, upload_id, owned=False)
        except BaseException:
            await _shielded(self._abort(self._key(path), upload_id))
            raise
        return upload_id

    async def put_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes]
    ) -> UploadedPart:
        if not 1 <= part_number <= 10000:
            raise InvalidArgument("part_number must be between 1 and 10000")
        buffer: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_PROXIED_PART:
                raise InvalidArgument(
                    f"A part may be at most {MAX_PROXIED_PART // MIB} MiB through the gateway")
            buffer.append(chunk)
        async with self._translating(path):
            resp = await self._client.upload_part(
                Bucket=self.bucket, Key=self._key(path), UploadId=upload_id,
                PartNumber=part_number, Body=b"".join(buffer))
        return UploadedPart(part_number, str(resp["ETag"]))

    async def complete_multipart(
        self, path: str, upload_id: str, parts: list[UploadedPart]
    ) -> None:
        ordered = sorted(parts, key=lambda p: p.part_number)
        async with self._translating(path):
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=self._key(path), UploadId=upload_id,
                MultipartUpload={"Parts": [
                    {"PartNumber": p.part_number, "ETag": p.etag} for p in ordered]})
        await self.ledger.end(upload_id)

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        try:
            async with self._translating(path):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(path), UploadId=upload_id)
        except NotFound:
            pass
        await self.ledger.end(upload_id)

    async def presign_part(
        self, path: str, upload_id: str, part_number: int, expires: int
    ) -> tuple[str, dict[str, str]]:
        url = await self._client.generate_presigned_url(
            "upload_part", ExpiresIn=expires, Params={
                "Bucket": self.bucket, "Key": self._key(path), "UploadId": upload_id,
                "PartNumber": part_number})
        return str(url), {}

    async def presign_get(self, path: str, expires: int) -> tuple[str, dict[str, str]]:
        url = await self._client.generate_presigned_url(
            "get_object", ExpiresIn=expires,
            Params={"Bucket": self.bucket, "Key": self._key(path)})
        return str(url), {}

    # -- leftovers ----------------------------------------------------------------------

    async def leftovers(self, noted: Collection[str] = (), *, full: bool = False
                        ) -> AsyncIterator[Leftover]:
        # The bucket lists its pending multipart uploads, ours or a client's (mpu/*).
        prefix = self._dir_prefix("")
        marker: dict[str, str] = {}
        while True:
            async with self._translating(""):
                resp = await self._client.list_multipart_uploads(
                    Bucket=self.bucket, **({"Prefix": prefix} if prefix else {}), **marker)
            for upload in resp.get("Uploads", []):
                key = str(upload["Key"])
                initiated = upload.get("Initiated")
                yield Leftover(
                    "multipart upload", key[len(prefix):],
                    int(initiated.timestamp() * 1000) if initiated is not None else None,
                    handle=str(upload["UploadId"]))
            if not resp.get("IsTruncated"):
                break
            marker = {"KeyMarker": resp.get("NextKeyMarker", ""),
                      "UploadIdMarker": resp.get("NextUploadIdMarker", "")}

    async def discard(self, leftover: Leftover) -> None:
        await self.abort_multipart(leftover.path, leftover.handle)

    async def last_written(self, leftover: Leftover) -> int | None:
        try:
            async with self._translating(leftover.path):
                resp = await self._client.list_parts(
                    Bucket=self.bucket, Key=self._key(leftover.path), UploadId=leftover.handle)
        except NotFound:
            return None
        times = [part["LastModified"] for part in resp.get("Parts", [])
                 if part.get("LastModified") is not None]
        return int(max(times).timestamp() * 1000) if times else leftover.started_ms

    # For tests and operators: what is pending in the bucket under our prefix.
    async def pending_multipart_uploads(self) -> list[str]:
        return [self._key(leftover.path) async for leftover in self.leftovers()]


def _mismatch(actual: str, expected: str) -> str:
    return f"SHA-256 of the uploaded bytes is {actual}, the client announced {expected}"


async def _shielded(coro: Any) -> None:
    """Run cleanup to the end even if the caller is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise

