"""S3-compatible object storage (AWS S3, SeaweedFS, MinIO, ...) with aioboto3.

Large artifacts go up as a multipart upload that a retried attempt resumes: the upload id and
part size are checkpointed and the server's own list of parts says what is done. Every part
carries its Content-MD5 (and, with S3_CHECKSUMS, its SHA-256) for the store to verify; where the
store says the object is plain or SSE-S3 its ETags are MD5s and are checked too. The completed
object's size, SHA-256 metadata and multipart ETag are checked against the local file before
the manifest is written beside it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
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

MIB = 1024 * 1024
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
LIST_PARTS_PAGE = 1000  # ListParts' maximum page
LIST_UPLOADS_PAGE = 1000  # ListMultipartUploads' maximum page
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
        size = artifact.stat().st_size
        async with self._client() as s3:
            upload = await self._resumable(s3, key, size, manifest.sha256, transfer)
            part_size = upload.part_size if upload else part_size_for(size, self.part_size)
            if size <= part_size:
                etag = await self._put_single(s3, artifact, key, manifest.sha256, transfer)
            else:
                etag = await self._put_multipart(
                    s3, artifact, key, manifest.sha256, part_size, upload, transfer
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
        size = artifact.stat().st_size
        length, md5, _ = await asyncio.to_thread(hash_range, artifact, 0, size)
        checksum = {"ChecksumSHA256": _b64(bytes.fromhex(sha256))} if self.checksums else {}
        with PartReader(artifact, 0, length) as body:
            await s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, Metadata={"sha256": sha256},
                ContentMD5=_b64(md5), **checksum, **self.extra,
            )  # fmt: skip
        transfer.requests.append("PutObject")
        transfer.on_progress(length)
        return f'"{md5.hex()}"'

    async def _put_multipart(
        self,
        s3: Any,
        artifact: Path,
        key: str,
        sha256: str,
        part_size: int,
        upload: _Upload | None,
        transfer: Transfer,
    ) -> str:
        size = artifact.stat().st_size
        count = math.ceil(size / part_size)
        md5s: dict[int, bytes] = {}
        completed: dict[int, dict[str, Any]] = {}  # what CompleteMultipartUpload lists per part
        if upload is None:
            algorithm = {"ChecksumAlgorithm": "SHA256"} if self.checksums else {}
            created = await s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata={"sha256": sha256}, **algorithm, **self.extra
            )
            transfer.requests.append("CreateMultipartUpload")
            upload = _Upload(created["UploadId"], part_size, _etag_is_md5(created), {})
            transfer.checkpoint({
                "key": key, "upload_id": upload.upload_id, "part_size": part_size,
                "sha256": sha256, "etag_is_md5": upload.etag_is_md5,
            })  # fmt: skip
        else:
            # Parts an earlier attempt uploaded must hold our file's bytes; any that does not
            # is sent again (S3 keeps the last upload of a part number).
            for number, listed in upload.parts.items():
                _, md5, checksum = await asyncio.to_thread(
                    self._hash_part, artifact, number, part_size
                )
                if self._listed_part_matches(listed, md5, checksum, upload.etag_is_md5):
                    md5s[number] = md5
                    completed[number] = {"PartNumber": number, "ETag": listed["ETag"], **checksum}
        upload_id = upload.upload_id
        uploaded = sum(_part_length(artifact, n, part_size) for n in completed)
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
                # Otherwise (SSE-KMS, SSE-C) the store verified the Content-MD5 and checksum.
                if _etag_is_md5(answer):
                    _check_etag(answer["ETag"], md5, number)
                md5s[number] = md5
                completed[number] = {"PartNumber": number, "ETag": answer["ETag"], **checksum}
                uploaded += length
                transfer.on_progress(uploaded)

        try:
            # A TaskGroup cancels the other parts as soon as one fails.
            async with asyncio.TaskGroup() as group:
                for number in range(1, count + 1):
                    if number not in completed:
                        group.create_task(send(number))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        parts = [completed[n] for n in range(1, count + 1)]
        await s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        transfer.requests.append("CompleteMultipartUpload")
        return multipart_etag([md5s[n] for n in range(1, count + 1)])

    def _hash_part(
        self, artifact: Path, number: int, part_size: int
    ) -> tuple[int, bytes, dict[str, str]]:
        """Length, MD5 and S3 checksum of one part (read in chunks, never whole)."""
        length, md5, sha256 = hash_range(
            artifact, (number - 1) * part_size, _part_length(artifact, number, part_size)
        )
        return length, md5, self._part_checksum(sha256)

    def _part_checksum(self, sha256: bytes) -> dict[str, str]:
        """S3 additional checksum of a part (its SHA-256): the store verifies it on arrival."""
        return {"ChecksumSHA256": _b64(sha256)} if self.checksums else {}

    def _listed_part_matches(
        self, listed: Mapping[str, Any], md5: bytes, checksum: dict[str, str], etag_is_md5: bool
    ) -> bool:
        if listed.get("ChecksumSHA256") and checksum:
            return bool(listed["ChecksumSHA256"] == checksum["ChecksumSHA256"])
        if etag_is_md5:
            return bool(str(listed.get("ETag", "")).strip('"') == md5.hex())
        return True  # nothing to compare: the store verified Content-MD5 on arrival

    async def _resumable(
        self, s3: Any, key: str, size: int, sha256: str, transfer: Transfer
    ) -> _Upload | None:
        """The checkpointed multipart upload with the parts the server holds, or None to start
        afresh. The checkpoint's part size wins over S3_PART_SIZE_MIB: the stored parts were cut
        at that size, and keeping it re-sends nothing (a changed setting applies to the next
        backup). An upload that can not continue is aborted, so it does not linger."""
        state = transfer.resume
        if not state or state.get("key") != key or "upload_id" not in state:
            return None
        upload_id, saved = str(state["upload_id"]), state.get("part_size")
        part_size = saved if isinstance(saved, int) else 0
        usable = (
            MIN_PART_SIZE <= part_size < size
            and math.ceil(size / part_size) <= MAX_PARTS
            and state.get("sha256", sha256) == sha256  # a re-dumped artifact starts over
        )
        if not usable:
            await self._abort(s3, key, upload_id)
            return None
        parts: dict[int, dict[str, Any]] = {}
        marker = 0
        while True:  # ListParts answers at most 1,000 parts a page
            after = {"PartNumberMarker": marker} if marker else {}
            try:
                page = await s3.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MaxParts=LIST_PARTS_PAGE, **after,
                )  # fmt: skip
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") == "NoSuchUpload":
                    return None
                raise
            transfer.requests.append("ListParts")
            parts.update({p["PartNumber"]: p for p in page.get("Parts", [])})
            following = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or following <= marker:
                break
            marker = following
        return _Upload(upload_id, part_size, bool(state.get("etag_is_md5", True)), parts)

    async def _abort(self, s3: Any, key: str, upload_id: str) -> None:
        try:
            await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    async def _check_stored(self, s3: Any, key: str, size: int, sha256: str, etag: str) -> None:
        head = await s3.head_object(Bucket=self.bucket, Key=key)
        problems = []
        if head["ContentLength"] != size:
            problems.append(f"size {head['ContentLength']} instead of {size}")
        if head.get("Metadata", {}).get("sha256") != sha256:
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

    async def _uploads(self, s3: Any, prefix: str) -> list[dict[str, Any]]:
        """Every unfinished multipart upload under `prefix`, through all pages."""
        uploads: list[dict[str, Any]] = []
        markers: dict[str, str] = {}
        while True:
            page = await s3.list_multipart_uploads(
                Bucket=self.bucket, Prefix=prefix, MaxUploads=LIST_UPLOADS_PAGE, **markers
            )
            uploads.extend(page.get("Uploads", []))
            # SeaweedFS pages by upload id alone (no NextKeyMarker), so pass what is given; a
            # page that does not move the markers on would loop forever.
            following = {
                name: str(page[f"Next{name}"])
                for name in ("KeyMarker", "UploadIdMarker")
                if page.get(f"Next{name}")
            }
            if not page.get("IsTruncated") or not following or following == markers:
                return uploads
            markers = following

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


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _part_length(path: Path, number: int, part_size: int) -> int:
    return max(0, min(part_size, path.stat().st_size - (number - 1) * part_size))


@dataclass
class _Upload:
    """A multipart upload in progress: what the checkpoint and ListParts say."""

    upload_id: str
    part_size: int
    etag_is_md5: bool
    parts: dict[int, dict[str, Any]]  # part number -> ListParts entry (ETag, ChecksumSHA256)


def _etag_is_md5(answer: Mapping[str, Any]) -> bool:
    """Whether S3's ETags for this object are MD5s of the bytes: only for plain and SSE-S3
    (AES256) objects, not SSE-KMS (aws:kms, aws:kms:dsse) or SSE-C. Decided from what S3 says
    it did, not from S3_SERVER_SIDE_ENCRYPTION: a bucket's default encryption applies without
    any header of ours."""
    return answer.get("ServerSideEncryption") in (None, "AES256") and not answer.get(
        "SSECustomerAlgorithm"
    )


def _check_etag(etag: str, md5: bytes, number: int) -> None:
    if etag.strip('"') != md5.hex():
        raise StorageError(f"part {number} arrived corrupted (ETag {etag}, expected {md5.hex()})")


def _parse(location: str) -> tuple[str, str]:
    parsed = urlparse(location)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise StorageError(f"{location!r} is not an s3://BUCKET/KEY location", retryable=False)
    return parsed.netloc, parsed.path.lstrip("/")
