"""S3-compatible object storage (AWS S3, SeaweedFS, MinIO, ...) with aioboto3.

Large artifacts go up as a multipart upload that a retried attempt resumes: the upload id is
checkpointed and the server's own list of parts says what is done. Every part's MD5 is compared
with the ETag the server returns, and the completed object's size, SHA-256 metadata and
multipart ETag are checked against the local file before the manifest is written beside it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import math
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from backup.errors import StorageError
from backup.manifest import Manifest, manifest_name
from backup.retention import StoredBackup, StoredObject, group_backups
from backup.signing import SIGNATURE_SUFFIX
from backup.storage.base import Fetched, Signer, Stored, Transfer

MIB = 1024 * 1024
MAX_PARTS = 10_000
# A session is reused while these are unchanged (credentials rotated in the environment win).
CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
)  # fmt: skip
# Codes only a person can fix; everything else (5xx, throttling, timeouts) is retried.
PERMANENT = {
    "NoSuchBucket": "bucket {bucket!r} does not exist: create it or fix S3_BUCKET",
    "InvalidAccessKeyId": "the S3 access key is not known to {endpoint}: fix the credentials",
    "SignatureDoesNotMatch": "the S3 secret key is wrong for {endpoint}: fix the credentials",
    "AccessDenied": "access to bucket {bucket!r} denied: grant s3:PutObject, s3:GetObject, "
    "s3:ListBucketMultipartUploads and s3:AbortMultipartUpload to these credentials (and "
    "s3:ListBucket and s3:DeleteObject where retention runs)",
    "InvalidBucketName": "{bucket!r} is not a valid bucket name: fix S3_BUCKET",
}


def part_size_for(size: int, minimum: int) -> int:
    """At least `minimum`, and large enough that the artifact fits S3's 10,000-part limit."""
    needed = math.ceil(size / MAX_PARTS)
    return max(minimum, math.ceil(needed / MIB) * MIB)


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the parts' MD5s, then the part count."""
    return f'"{hashlib.md5(b"".join(part_md5s)).hexdigest()}-{len(part_md5s)}"'


class S3Storage:
    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
        part_size: int = 16 * MIB,
        concurrency: int = 4,
        checksums: bool = True,
        extra_put_args: dict[str, str] | None = None,
        sign: Signer | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        self.concurrency = concurrency
        # S3 additional checksums (SHA-256), verified by the store; off for stores without them.
        self.checksums = checksums
        self._sign = sign
        # ServerSideEncryption, SSEKMSKeyId, StorageClass: passed on every object we create.
        self.extra = extra_put_args or {}
        # With SSE-KMS the ETag is not the MD5 of the bytes, so it can not be checked.
        self.etag_is_md5 = self.extra.get("ServerSideEncryption") != "aws:kms"

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[Any]:
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            # Our own SHA-256/MD5 checks cover integrity; CRC headers confuse some S3 clones.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = _session(_credential_env())
        try:
            async with session.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
            ) as client:
                yield client
        except ClientError as err:
            raise self._error(err) from err
        except NoCredentialsError as err:
            raise StorageError(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or any "
                "source of the AWS credential chain)",
                retryable=False,
            ) from err
        except BotoCoreError as err:
            raise StorageError(f"S3 at {self.endpoint_url or 'AWS'} unreachable: {err}") from err

    def _error(self, err: ClientError) -> StorageError:
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        template = PERMANENT.get(code)
        if template is None and status == 403:
            template = PERMANENT["AccessDenied"]
        endpoint = self.endpoint_url or "AWS S3"
        if template:
            return StorageError(
                template.format(bucket=self.bucket, endpoint=endpoint), retryable=False
            )
        return StorageError(f"S3 {code or status} from {endpoint}: {err}")

    def _key(self, key: str) -> str:
        return self.prefix + key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def store(
        self, artifact: Path, manifest: Manifest, key: str, transfer: Transfer
    ) -> Stored:
        key = self._key(key)
        size = artifact.stat().st_size
        part_size = part_size_for(size, self.part_size)
        async with self._client() as s3:
            if size <= part_size:
                etag = await self._put_single(s3, artifact, key, manifest.sha256, transfer)
            else:
                etag = await self._put_multipart(
                    s3, artifact, key, manifest.sha256, part_size, transfer
                )
            await self._check_stored(s3, key, size, manifest.sha256, etag)
            manifest_key = manifest_name(key)
            raw = manifest.to_bytes()
            if self._sign:  # the signature lands first: a manifest is never unsigned when seen
                await s3.put_object(
                    Bucket=self.bucket, Key=manifest_key + SIGNATURE_SUFFIX, Body=self._sign(raw),
                    **self.extra,
                )  # fmt: skip
            await s3.put_object(
                Bucket=self.bucket,
                Key=manifest_key,
                Body=raw,
                ContentType="application/json",
                **self.extra,
            )
            transfer.requests.append("PutObject(manifest)")
        return Stored(self.location(key), self.location(manifest_key))

    async def _put_single(
        self, s3: Any, artifact: Path, key: str, sha256: str, transfer: Transfer
    ) -> str:
        body = await asyncio.to_thread(artifact.read_bytes)
        md5 = hashlib.md5(body).digest()
        checksum = {"ChecksumSHA256": _b64(bytes.fromhex(sha256))} if self.checksums else {}
        await s3.put_object(
            Bucket=self.bucket, Key=key, Body=body, Metadata={"sha256": sha256},
            ContentMD5=_b64(md5), **checksum, **self.extra,
        )  # fmt: skip
        transfer.requests.append("PutObject")
        transfer.on_progress(len(body))
        return f'"{md5.hex()}"'

    async def _put_multipart(
        self, s3: Any, artifact: Path, key: str, sha256: str, part_size: int, transfer: Transfer
    ) -> str:
        size = artifact.stat().st_size
        count = math.ceil(size / part_size)
        done = await self._resumable_parts(s3, key, transfer)
        if done is None:
            algorithm = {"ChecksumAlgorithm": "SHA256"} if self.checksums else {}
            created = await s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata={"sha256": sha256}, **algorithm, **self.extra
            )
            transfer.requests.append("CreateMultipartUpload")
            upload_id, done = created["UploadId"], {}
            transfer.checkpoint({"key": key, "upload_id": upload_id, "part_size": part_size})
        else:
            upload_id = transfer.resume["upload_id"]  # type: ignore[index]
        md5s: dict[int, bytes] = {}
        completed: dict[int, dict[str, Any]] = {}  # what CompleteMultipartUpload lists per part
        uploaded = sum(min(part_size, size - (n - 1) * part_size) for n in done)
        limit = asyncio.Semaphore(self.concurrency)

        async def send(number: int) -> None:
            nonlocal uploaded
            async with limit:
                # Hash off the event loop (hashlib releases the GIL), then send the part as a
                # stream of the file: a bytes body is copied again into the socket's buffer
                # when the send outpaces the network, which took the worker past 280 MB RSS.
                length, md5, checksum = await asyncio.to_thread(
                    self._hash_part, artifact, number, part_size
                )
                with PartReader(artifact, (number - 1) * part_size, length) as body:
                    answer = await s3.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                        Body=body, ContentMD5=_b64(md5), **checksum,
                    )  # fmt: skip
                transfer.requests.append(f"UploadPart({number})")
                if self.etag_is_md5:
                    _check_etag(answer["ETag"], md5, number)
                md5s[number] = md5
                completed[number] = {"PartNumber": number, "ETag": answer["ETag"], **checksum}
                uploaded += length
                transfer.on_progress(uploaded)

        try:
            # A TaskGroup cancels the other parts as soon as one fails.
            async with asyncio.TaskGroup() as group:
                for number in range(1, count + 1):
                    if number not in done:
                        group.create_task(send(number))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        # Parts uploaded by an earlier attempt: their ETags must match our file's bytes.
        for number, etag in done.items():
            _, md5s[number], checksum = await asyncio.to_thread(
                self._hash_part, artifact, number, part_size
            )
            if self.etag_is_md5:
                _check_etag(etag, md5s[number], number)
            completed[number] = {"PartNumber": number, "ETag": etag, **checksum}
        parts = [completed[n] for n in range(1, count + 1)]
        await s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        transfer.requests.append("CompleteMultipartUpload")
        return multipart_etag([md5s[n] for n in range(1, count + 1)])

    def _hash_part(
        self, artifact: Path, number: int, part_size: int
    ) -> tuple[int, bytes, dict[str, str]]:
        """Length, MD5 and S3 checksum of one part, read in 1 MiB chunks: never the whole part
        in memory (whole 16 MiB parts, several at once, kept ~90 MB in malloc's arenas)."""
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        with PartReader(
            artifact, (number - 1) * part_size, _part_length(artifact, number, part_size)
        ) as part:
            while chunk := part.read(MIB):
                md5.update(chunk)
                sha256.update(chunk)
            length = part.tell()
        return length, md5.digest(), self._part_checksum(sha256.digest())

    def _part_checksum(self, sha256: bytes) -> dict[str, str]:
        """S3 additional checksum of a part (its SHA-256): the store verifies it on arrival."""
        return {"ChecksumSHA256": _b64(sha256)} if self.checksums else {}

    async def _resumable_parts(
        self, s3: Any, key: str, transfer: Transfer
    ) -> dict[int, str] | None:
        """Parts the server holds for the checkpointed upload, or None to start afresh."""
        state = transfer.resume
        if not state or state.get("key") != key or "upload_id" not in state:
            return None
        try:
            listed = await s3.list_parts(Bucket=self.bucket, Key=key, UploadId=state["upload_id"])
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return None
            raise
        transfer.requests.append("ListParts")
        return {p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])}

    async def _check_stored(self, s3: Any, key: str, size: int, sha256: str, etag: str) -> None:
        head = await s3.head_object(Bucket=self.bucket, Key=key)
        problems = []
        if head["ContentLength"] != size:
            problems.append(f"size {head['ContentLength']} instead of {size}")
        if head.get("Metadata", {}).get("sha256") != sha256:
            problems.append("sha256 metadata missing or different")
        if self.etag_is_md5 and head.get("ETag") != etag:
            problems.append(f"ETag {head.get('ETag')} instead of {etag}")
        if problems:
            raise StorageError(f"s3://{self.bucket}/{key} after upload: {', '.join(problems)}")

    async def fetch(self, location: str, destination: Path, transfer: Transfer) -> Fetched:
        bucket, key = _parse(location)
        if bucket != self.bucket:
            raise StorageError(f"{location} is not in bucket {self.bucket!r}", retryable=False)
        async with self._client() as s3:
            answer = await s3.get_object(Bucket=bucket, Key=manifest_name(key))
            raw = await answer["Body"].read()
            signature = await self._optional(s3, manifest_name(key) + SIGNATURE_SUFFIX)
            answer = await s3.get_object(Bucket=bucket, Key=key)
            done = 0
            with destination.open("wb") as out:
                async for chunk in answer["Body"].iter_chunks(4 * MIB):
                    out.write(chunk)
                    done += len(chunk)
                    transfer.on_progress(done)
        return Fetched(Manifest.model_validate_json(raw), raw, signature)

    async def _optional(self, s3: Any, key: str) -> bytes | None:
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return bytes(await answer["Body"].read())

    async def abort_incomplete(self, key: str) -> int:
        key = self._key(key)
        aborted = 0
        async with self._client() as s3:
            listed = await s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            for upload in listed.get("Uploads", []):
                await s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                aborted += 1
        return aborted

    async def list_backups(self, project_id: str) -> list[StoredBackup]:
        folder = self._key(f"backups/{project_id}/")
        objects = []
        async with self._client() as s3:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, Delimiter="/"
            )
            async for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    objects.append(StoredObject(key, key.rsplit("/", 1)[-1], item["Size"]))
        return group_backups(objects, self.location)

    async def delete_backup(self, backup: StoredBackup) -> None:
        if not backup.keys:
            return
        async with self._client() as s3:
            # Deleting a key that is already gone succeeds in S3: a repeat is harmless.
            answer = await s3.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in backup.keys], "Quiet": True},
            )
        failed = answer.get("Errors", [])
        if failed:
            what = ", ".join(f"{f.get('Key')}: {f.get('Code')}" for f in failed)
            if any(f.get("Code") == "AccessDenied" for f in failed):
                raise StorageError(
                    PERMANENT["AccessDenied"].format(bucket=self.bucket) + f" ({what})",
                    retryable=False,
                )
            raise StorageError(f"S3 could not delete {what}")


def _credential_env() -> tuple[object, ...]:
    # Per thread too: botocore sessions are not safe to share between threads.
    return (threading.get_ident(), *(os.environ.get(name) for name in CREDENTIAL_ENV))


@functools.lru_cache(maxsize=8)
def _session(_env: tuple[object, ...]) -> aioboto3.Session:
    """A session per credential environment, reused: a new one loads botocore's data and the
    credential chain again, which costs 0.3-1 s per upload, cleanup or retention listing on a
    busy 2-core box (bench/results.md) and dominates small backups."""
    return aioboto3.Session()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class PartReader(io.RawIOBase):
    """A seekable read-only view of `length` bytes of a file from `offset`: an upload body that
    streams from the page cache instead of sitting in memory. Positions are relative to the
    part, so botocore's rewind on a retry (seek(0)) and its length probe (seek(0, 2)) work."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._offset = offset
        self._length = length
        self._pos = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._length - self._pos)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(0, base + offset), self._length)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _part_length(path: Path, number: int, part_size: int) -> int:
    return max(0, min(part_size, path.stat().st_size - (number - 1) * part_size))


def _check_etag(etag: str, md5: bytes, number: int) -> None:
    if etag.strip('"') != md5.hex():
        raise StorageError(f"part {number} arrived corrupted (ETag {etag}, expected {md5.hex()})")


def _parse(location: str) -> tuple[str, str]:
    parsed = urlparse(location)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise StorageError(f"{location!r} is not an s3://BUCKET/KEY location", retryable=False)
    return parsed.netloc, parsed.path.lstrip("/")
