"""S3 multipart uploads: parts sent from a file range or from memory, a checkpointed upload
resumed from the server's list of parts, and the checks that hold the parts to their bytes.

`S3Storage` mixes this in; `backup.storage.s3_stream` sends parts of an artifact while it is
still being written, through the same `_send_part`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from backup.errors import ArtifactCorrupted, StorageError
from backup.storage.base import MemoryReader, PartReader, Transfer, hash_range

MIB = 1024 * 1024
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
LIST_PARTS_PAGE = 1000  # ListParts' maximum page
LIST_UPLOADS_PAGE = 1000  # ListMultipartUploads' maximum page


def part_size_for(size: int, minimum: int) -> int:
    """At least `minimum`, and large enough that the artifact fits S3's 10,000-part limit."""
    needed = math.ceil(size / MAX_PARTS)
    return max(minimum, math.ceil(needed / MIB) * MIB)


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the parts' MD5s, then the part count."""
    return f'"{hashlib.md5(b"".join(part_md5s)).hexdigest()}-{len(part_md5s)}"'


@dataclass
class _Upload:
    """A multipart upload in progress: what the checkpoint and ListParts say."""

    upload_id: str
    part_size: int
    etag_is_md5: bool
    parts: dict[int, dict[str, Any]]  # part number -> ListParts entry (ETag, ChecksumSHA256)
    # Parts sent while the artifact was written (s3_stream): number -> size, md5, checksum.
    journaled: dict[int, dict[str, Any]] | None = None
    streamed: bool = False  # sent from memory: no spool file holds the bytes again


@dataclass(frozen=True)
class PartHashes:
    """A part's length and hashes, taken from the dump's bytes as they were written."""

    length: int
    md5: bytes
    sha256: bytes | None  # None without S3_CHECKSUMS


@dataclass(frozen=True)
class SentPart:
    number: int
    size: int
    md5: bytes
    checksum: dict[str, str]  # ChecksumSHA256 when S3_CHECKSUMS
    etag: str

    def completed(self) -> dict[str, Any]:
        """The part as CompleteMultipartUpload lists it."""
        return {"PartNumber": self.number, "ETag": self.etag, **self.checksum}

    def journal(self) -> dict[str, Any]:
        return {"size": self.size, "md5": self.md5.hex(), "etag": self.etag, **self.checksum}


class Multipart:
    """The multipart half of S3Storage (its attributes: bucket, checksums, concurrency)."""

    bucket: str
    checksums: bool
    concurrency: int
    extra: dict[str, str]

    async def _create_upload(self, s3: Any, key: str, metadata: dict[str, str]) -> _Upload:
        algorithm = {"ChecksumAlgorithm": "SHA256"} if self.checksums else {}
        created = await s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, Metadata=metadata, **algorithm, **self.extra
        )
        return _Upload(created["UploadId"], 0, _etag_is_md5(created), {})

    async def _send_part(
        self,
        s3: Any,
        key: str,
        upload: _Upload,
        number: int,
        source: Path | memoryview,
        known: PartHashes | None = None,
    ) -> SentPart:
        """Part `number` of the file `source` cut at the upload's part size, or the bytes in
        memory `source`. Hashed off the event loop (hashlib releases the GIL) unless its
        hashes are `known` (taken from the dump's bytes as they were written), then sent as a
        stream: a file range is read from the page cache, never whole (a bytes body is copied
        again into the socket's buffer when the send outpaces the network, which took the
        worker past 280 MB RSS). The store checks the body against those hashes."""
        body: io.IOBase
        if isinstance(source, memoryview):
            md5, sha256 = await asyncio.to_thread(_hash_bytes, source)
            length, checksum = len(source), self._part_checksum(sha256)
            body = MemoryReader(source)
        else:
            if known is None:
                length, md5, checksum = await asyncio.to_thread(
                    self._hash_part, source, number, upload.part_size
                )
            else:
                length, md5 = known.length, known.md5
                checksum = self._part_checksum(known.sha256) if known.sha256 else {}
            body = PartReader(source, (number - 1) * upload.part_size, length)
        with body:
            answer = await s3.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=body,
                ContentMD5=_b64(md5),
                **checksum,
            )
        # Otherwise (SSE-KMS, SSE-C) the store verified the Content-MD5 and checksum.
        if _etag_is_md5(answer):
            _check_etag(answer["ETag"], md5, number)
        return SentPart(number, length, md5, checksum, answer["ETag"])

    async def _put_multipart(
        self,
        s3: Any,
        artifact: Path,
        key: str,
        size: int,
        sha256: str,
        part_size: int,
        upload: _Upload | None,
        transfer: Transfer,
    ) -> str:
        count = math.ceil(size / part_size)
        md5s: dict[int, bytes] = {}
        completed: dict[int, dict[str, Any]] = {}  # what CompleteMultipartUpload lists per part
        if upload is None:
            upload = await self._create_upload(s3, key, {"sha256": sha256})
            upload.part_size = part_size
            transfer.requests.append("CreateMultipartUpload")
            transfer.checkpoint(
                {
                    "key": key,
                    "upload_id": upload.upload_id,
                    "part_size": part_size,
                    "sha256": sha256,
                    "etag_is_md5": upload.etag_is_md5,
                }
            )
        else:
            # Parts an earlier attempt uploaded must hold our file's bytes; any that does not
            # is sent again (S3 keeps the last upload of a part number).
            for number, listed in upload.parts.items():
                md5, checksum = await self._expected_part(upload, artifact, number)
                if self._listed_part_matches(listed, md5, checksum, upload.etag_is_md5):
                    md5s[number] = md5
                    completed[number] = {"PartNumber": number, "ETag": listed["ETag"], **checksum}
        missing = [n for n in range(1, count + 1) if n not in completed]
        if missing and upload.streamed:
            raise ArtifactCorrupted(
                f"parts {missing[:5]} of the streamed upload of {key} are not in S3 and no spool "
                "file holds them (SPOOL_MODE=stream); the dump is redone"
            )
        uploaded = sum(_part_length(size, n, part_size) for n in completed)
        limit = asyncio.Semaphore(self.concurrency)

        async def send(number: int) -> None:
            nonlocal uploaded
            async with limit:
                part = await self._send_part(s3, key, upload, number, artifact)
                transfer.requests.append(f"UploadPart({number})")
                md5s[number] = part.md5
                completed[number] = part.completed()
                uploaded += part.size
                transfer.on_progress(uploaded)

        try:
            # A TaskGroup cancels the other parts as soon as one fails.
            async with asyncio.TaskGroup() as group:
                for number in missing:
                    group.create_task(send(number))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        await self._complete(s3, key, upload.upload_id, [completed[n] for n in range(1, count + 1)])
        transfer.requests.append("CompleteMultipartUpload")
        return multipart_etag([md5s[n] for n in range(1, count + 1)])

    async def _complete(self, s3: Any, key: str, upload_id: str, parts: list[Any]) -> None:
        await s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    async def _expected_part(
        self, upload: _Upload, artifact: Path, number: int
    ) -> tuple[bytes, dict[str, str]]:
        """MD5 and checksum a stored part must have: from the journal of a part sent while the
        artifact was written (the verify step has just hashed the whole file), else hashed
        again from the spool file."""
        known = (upload.journaled or {}).get(number)
        if known:
            checksum = {k: v for k, v in known.items() if k == "ChecksumSHA256"}
            return bytes.fromhex(known["md5"]), checksum
        if upload.streamed:
            return b"", {}  # matches nothing: the part is reported missing
        _, md5, checksum = await asyncio.to_thread(
            self._hash_part, artifact, number, upload.part_size
        )
        return md5, checksum

    def _hash_part(
        self, artifact: Path, number: int, part_size: int
    ) -> tuple[int, bytes, dict[str, str]]:
        """Length, MD5 and S3 checksum of one part (read in chunks, never whole)."""
        size = artifact.stat().st_size
        length, md5, sha256 = hash_range(
            artifact, (number - 1) * part_size, _part_length(size, number, part_size)
        )
        return length, md5, self._part_checksum(sha256)

    def _part_checksum(self, sha256: bytes) -> dict[str, str]:
        """S3 additional checksum of a part (its SHA-256): the store verifies it on arrival."""
        return {"ChecksumSHA256": _b64(sha256)} if self.checksums else {}

    def _listed_part_matches(
        self, listed: Mapping[str, Any], md5: bytes, checksum: dict[str, str], etag_is_md5: bool
    ) -> bool:
        if not md5:
            return False
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
            if state.get("streamed"):
                raise ArtifactCorrupted(
                    f"the streamed upload of {key} does not match its manifest; the dump is redone"
                )
            return None
        parts = await self._list_parts(s3, key, upload_id, transfer)
        if parts is None:
            if state.get("streamed"):
                raise ArtifactCorrupted(f"the streamed upload of {key} is gone; the dump is redone")
            return None
        journaled = {int(n): p for n, p in (state.get("parts") or {}).items()}
        return _Upload(
            upload_id,
            part_size,
            bool(state.get("etag_is_md5", True)),
            parts,
            journaled or None,
            bool(state.get("streamed")),
        )

    async def _list_parts(
        self, s3: Any, key: str, upload_id: str, transfer: Transfer
    ) -> dict[int, dict[str, Any]] | None:
        """Every part the server holds (ListParts pages hold at most 1,000); None when the
        upload is gone."""
        parts: dict[int, dict[str, Any]] = {}
        marker = 0
        while True:
            after = {"PartNumberMarker": marker} if marker else {}
            try:
                page = await s3.list_parts(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MaxParts=LIST_PARTS_PAGE,
                    **after,
                )
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") == "NoSuchUpload":
                    return None
                raise
            transfer.requests.append("ListParts")
            parts.update({p["PartNumber"]: p for p in page.get("Parts", [])})
            following = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or following <= marker:
                return parts
            marker = following

    async def _abort(self, s3: Any, key: str, upload_id: str) -> None:
        try:
            await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

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


def _hash_bytes(data: memoryview) -> tuple[bytes, bytes]:
    return hashlib.md5(data).digest(), hashlib.sha256(data).digest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _part_length(size: int, number: int, part_size: int) -> int:
    return max(0, min(part_size, size - (number - 1) * part_size))


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
