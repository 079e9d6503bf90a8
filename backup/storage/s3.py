"""S3-compatible object storage (AWS S3, SeaweedFS, MinIO, ...) with aioboto3.

Large artifacts go up as a multipart upload that a retried attempt resumes: the upload id and
part size are checkpointed and the server's own list of parts says what is done (the multipart
half is `s3_multipart`; parts sent while the dump still runs, `s3_stream`, are completed here).
Every part carries its Content-MD5 (and, with S3_CHECKSUMS, its SHA-256) for the store to
verify; where the store says the object is plain or SSE-S3 its ETags are MD5s and are checked
too. The completed object's size, SHA-256 metadata (absent on parts sent while dumping: the
hash was not known yet) and multipart ETag are checked before the manifest is written beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from backup import layout
from backup.errors import StorageError
from backup.layout import SIGNATURE_SUFFIX, StoredBackup, StoredObject, group_backups, manifest_name
from backup.manifest import Manifest
from backup.storage.base import Fetched, PartReader, Signer, Stored, Transfer, hash_range
from backup.storage.s3_client import shared_client
from backup.storage.s3_multipart import (
    MAX_PARTS,
    MIB,
    MIN_PART_SIZE,
    Multipart,
    _b64,
    _etag_is_md5,
    multipart_etag,
    part_size_for,
)

__all__ = ["MAX_PARTS", "MIB", "MIN_PART_SIZE", "S3Storage", "multipart_etag", "part_size_for"]
# Codes only a person can fix; everything else (5xx, throttling, timeouts) is retried.
PERMANENT = {
    "NoSuchBucket": "bucket {bucket!r} does not exist at {endpoint}: create it or fix S3_BUCKET "
    "(and S3_ENDPOINT_URL, S3_REGION)",
    "InvalidAccessKeyId": "S3 at {endpoint} does not know the access key id used for bucket "
    "{bucket!r}: fix AWS_ACCESS_KEY_ID (or whichever credentials the AWS chain picks: profile, "
    "role)",
    "SignatureDoesNotMatch": "S3 at {endpoint} rejected the secret key used for bucket "
    "{bucket!r}: AWS_SECRET_ACCESS_KEY does not belong to AWS_ACCESS_KEY_ID; fix the pair (or "
    "whichever credentials the AWS chain picks: profile, role)",
    "AccessDenied": "access to bucket {bucket!r} at {endpoint} denied: grant these credentials "
    "s3:PutObject, s3:GetObject, s3:ListMultipartUploadParts, s3:AbortMultipartUpload and "
    "s3:ListBucketMultipartUploads on the bucket, s3:ListBucket (without it a missing object "
    "is also answered 403) and s3:DeleteObject where retention runs, and kms:GenerateDataKey "
    "and kms:Decrypt on the key when the bucket or S3_SERVER_SIDE_ENCRYPTION uses SSE-KMS",
    "InvalidBucketName": "{bucket!r} is not a valid bucket name: fix S3_BUCKET",
}
MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Storage(Multipart):
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

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[Any]:
        """The shared client of this event loop (see `shared_client`), with S3's errors
        turned into StorageErrors that say what to fix."""
        try:
            yield await self._connection()
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

    async def _connection(self) -> Any:
        return await shared_client(self.endpoint_url, self.region)

    @property
    def _endpoint(self) -> str:
        return self.endpoint_url or "AWS S3"

    def _error(self, err: ClientError) -> StorageError:
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        template = PERMANENT.get(code)
        if template is None and status == 403:
            template = PERMANENT["AccessDenied"]
        if template:
            return StorageError(
                template.format(bucket=self.bucket, endpoint=self._endpoint), retryable=False
            )
        return StorageError(f"S3 {code or status} from {self._endpoint}: {err}")

    def _key(self, key: str) -> str:
        return self.prefix + key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def store(
        self, artifact: Path, manifest: Manifest, key: str, transfer: Transfer
    ) -> Stored:
        key = self._key(key)
        streamed = bool(transfer.resume and transfer.resume.get("streamed"))
        # SPOOL_MODE=stream leaves no spool file: the manifest says what the parts add up to.
        size = manifest.size_bytes if streamed else artifact.stat().st_size
        async with self._client() as s3:
            upload = await self._resumable(s3, key, size, manifest.sha256, transfer)
            part_size = upload.part_size if upload else part_size_for(size, self.part_size)
            if size <= part_size:
                etag, proven = await self._put_single(s3, artifact, key, manifest.sha256, transfer)
            else:
                etag = await self._put_multipart(
                    s3, artifact, key, size, manifest.sha256, part_size, upload, transfer
                )
                proven = False
            if not proven:
                # Parts sent while dumping went up before the SHA-256 was known: no metadata.
                metadata = not (upload and upload.journaled)
                sha256 = manifest.sha256 if metadata else None
                await self._check_stored(s3, key, size, sha256, etag)
            manifest_key = manifest_name(key)
            raw = manifest.to_bytes()
            if self._sign:  # the signature lands first: a manifest is never unsigned when seen
                await s3.put_object(
                    Bucket=self.bucket,
                    Key=manifest_key + SIGNATURE_SUFFIX,
                    Body=self._sign(raw),
                    **self.extra,
                )
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
    ) -> tuple[str, bool]:
        """The object's ETag, and whether the PUT's own answer proves what was stored: an ETag
        that is an MD5 and is the artifact's. Only an opaque ETag (SSE-KMS) leaves the check to
        a HeadObject, which a tiny backup is spared (one request of its five)."""
        size = artifact.stat().st_size
        length, md5, _ = await asyncio.to_thread(hash_range, artifact, 0, size)
        checksum = {"ChecksumSHA256": _b64(bytes.fromhex(sha256))} if self.checksums else {}
        etag = f'"{md5.hex()}"'
        with PartReader(artifact, 0, length) as body:
            answer = await s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                Metadata={"sha256": sha256},
                ContentMD5=_b64(md5),
                **checksum,
                **self.extra,
            )
        transfer.requests.append("PutObject")
        transfer.on_progress(length)
        if not _etag_is_md5(answer):
            return etag, False
        if answer.get("ETag") != etag:
            stored = answer.get("ETag")
            raise StorageError(
                f"s3://{self.bucket}/{key} after upload: ETag {stored} instead of {etag}"
            )
        return etag, True

    async def _check_stored(
        self, s3: Any, key: str, size: int, sha256: str | None, etag: str
    ) -> None:
        head = await s3.head_object(Bucket=self.bucket, Key=key)
        problems = []
        if head["ContentLength"] != size:
            problems.append(f"size {head['ContentLength']} instead of {size}")
        if sha256 is not None and head.get("Metadata", {}).get("sha256") != sha256:
            problems.append("sha256 metadata missing or different")
        if _etag_is_md5(head) and head.get("ETag") != etag:
            problems.append(f"ETag {head.get('ETag')} instead of {etag}")
        if problems:
            raise StorageError(f"s3://{self.bucket}/{key} after upload: {', '.join(problems)}")

    async def fetch(self, location: str, destination: Path, transfer: Transfer) -> Fetched:
        bucket, key = _parse(location)
        if bucket != self.bucket:
            raise StorageError(f"{location} is not in bucket {self.bucket!r}", retryable=False)
        async with self._client() as s3:
            answer = await self._get(s3, manifest_name(key), location, "its manifest")
            raw = await answer["Body"].read()
            signature = await self._optional(s3, manifest_name(key) + SIGNATURE_SUFFIX)
            answer = await self._get(s3, key, location, "the artifact")
            done = 0
            with destination.open("wb") as out:
                async for chunk in answer["Body"].iter_chunks(4 * MIB):
                    out.write(chunk)
                    done += len(chunk)
                    transfer.on_progress(done)
        return Fetched(Manifest.model_validate_json(raw), raw, signature)

    async def _get(self, s3: Any, key: str, location: str, what: str) -> Any:
        """GetObject of `key`, part of the backup at `location`; missing is permanent."""
        try:
            return await s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in MISSING:
                raise
        # Raised outside the except block: nothing of botocore's error rides along.
        raise StorageError(
            f"no backup at {location} ({what} is missing at {self._endpoint}): check the location",
            retryable=False,
        )

    async def _optional(self, s3: Any, key: str) -> bytes | None:
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in MISSING:
                return None
            raise
        return bytes(await answer["Body"].read())

    async def abort_incomplete(self, key: str) -> int:
        key = self._key(key)
        aborted = 0
        async with self._client() as s3:
            for upload in await self._uploads(s3, key):
                await self._abort(s3, upload["Key"], upload["UploadId"])
                aborted += 1
        return aborted

    async def abort_abandoned_uploads(
        self, older_than: timedelta, now: datetime | None = None
    ) -> int:
        prefix = self._key(f"{layout.ROOT}/")
        cutoff = (now or datetime.now(UTC)) - older_than
        aborted = 0
        async with self._client() as s3:
            for upload in await self._uploads(s3, prefix):
                initiated = upload.get("Initiated")
                # The key check guards against a store that ignores Prefix; an upload of
                # unknown age may be live, so it stays.
                if upload["Key"].startswith(prefix) and initiated and initiated < cutoff:
                    await self._abort(s3, upload["Key"], upload["UploadId"])
                    aborted += 1
        return aborted

    async def list_backups(self, project_id: str) -> list[StoredBackup]:
        folder = self._key(layout.project_prefix(project_id))
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
                    PERMANENT["AccessDenied"].format(bucket=self.bucket, endpoint=self._endpoint)
                    + f" ({what})",
                    retryable=False,
                )
            raise StorageError(f"S3 could not delete {what}")


def _parse(location: str) -> tuple[str, str]:
    parsed = urlparse(location)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise StorageError(f"{location!r} is not an s3://BUCKET/KEY location", retryable=False)
    return parsed.netloc, parsed.path.lstrip("/")
