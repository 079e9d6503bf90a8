"""The S3 backend against a real SeaweedFS, beyond the shared contract: which ETags are MD5s
(decided from the encryption S3 reports, as under a bucket's default SSE-KMS), paged ListParts
and the checkpoint's part size on resume. Fixtures and helpers are the contract suite's."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from backup.download import download
from backup.errors import StorageError
from backup.storage import Transfer, s3_client, s3_multipart
from backup.storage import s3 as s3_module
from backup.storage.s3 import S3Storage
from devstack.seaweed import SeaweedS3
from tests.backends import KEY, MIB, Backend, artifact, crash_after, parts_sent, s3_backend

# Every call that answers with an ETag or says how the object is encrypted.
ANSWERS = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")


class LikeDefaultKms:
    """Rewrites SeaweedFS's answers into those of a bucket with default SSE-KMS: opaque ETags
    (not the bytes' MD5) and, unless `encryption` is None, the ServerSideEncryption field.
    CompleteMultipartUpload gets the store's real ETags back, as AWS accepts its own."""

    def __init__(self, encryption: str | None) -> None:
        self.encryption = encryption
        self.real: dict[str, str] = {}  # opaque ETag -> SeaweedFS's

    def answer(self, parsed: dict[str, Any], **_: Any) -> None:
        if "ETag" in parsed:
            opaque = f'"{hashlib.sha256(parsed["ETag"].encode()).hexdigest()[:32]}"'
            self.real[opaque] = parsed["ETag"]
            parsed["ETag"] = opaque
        if self.encryption:
            parsed["ServerSideEncryption"] = self.encryption

    def complete(self, params: dict[str, Any], **_: Any) -> None:
        for part in params["MultipartUpload"]["Parts"]:
            part["ETag"] = self.real.get(part["ETag"], part["ETag"])

    def install(self, monkeypatch: pytest.MonkeyPatch, clients: AsyncExitStack) -> None:
        """On a client of the test's own: the worker's shared one must not keep the hooks."""

        async def connection(storage: S3Storage) -> Any:
            if not clients_opened:
                s3 = await clients.enter_async_context(
                    s3_client.open_client(storage.endpoint_url, storage.region)
                )
                for operation in (*ANSWERS, "HeadObject"):
                    s3.meta.events.register(f"after-call.s3.{operation}", self.answer)
                s3.meta.events.register(
                    "before-parameter-build.s3.CompleteMultipartUpload", self.complete
                )
                clients_opened.append(s3)
            return clients_opened[0]

        clients_opened: list[Any] = []
        monkeypatch.setattr(S3Storage, "_connection", connection)


@pytest.fixture
async def like_default_kms(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[[str | None], None]]:
    async with AsyncExitStack() as clients:
        yield lambda encryption: LikeDefaultKms(encryption).install(monkeypatch, clients)


@pytest.mark.parametrize("encryption", ["aws:kms", "aws:kms:dsse"])
@pytest.mark.parametrize("parts", [0.5, 2.5])
async def test_default_sse_kms_etags_are_not_taken_for_md5s(
    seaweed: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    encryption: str,
    parts: float,
    like_default_kms: Callable[[str | None], None],
) -> None:
    """S3_SERVER_SIDE_ENCRYPTION unset, yet S3 answers as a bucket with default SSE-KMS does:
    opaque ETags and the ServerSideEncryption field. The upload must succeed."""
    backend = s3_backend(seaweed, monkeypatch)
    assert backend.settings.s3_server_side_encryption is None
    like_default_kms(encryption)
    source, manifest = artifact(tmp_path, int(backend.part_size * parts))
    stored = await backend.storage.store(source, manifest, KEY, Transfer())
    await download(stored.location, tmp_path / "fetched", backend.settings)
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("parts", [0.5, 2.5])
async def test_without_sse_a_wrong_etag_is_still_refused(
    seaweed: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    parts: float,
    like_default_kms: Callable[[str | None], None],
) -> None:
    """The same opaque ETags from a store that reports no encryption: they must be MD5s, and
    they are not, so the upload fails (part check for multipart, HeadObject for one PUT)."""
    backend = s3_backend(seaweed, monkeypatch)
    like_default_kms(None)
    source, manifest = artifact(tmp_path, int(backend.part_size * parts))
    with pytest.raises(StorageError, match="ETag"):
        await backend.storage.store(source, manifest, KEY, Transfer())


def test_etag_is_md5_only_for_plain_and_sse_s3_objects() -> None:
    assert s3_module._etag_is_md5({})
    assert s3_module._etag_is_md5({"ServerSideEncryption": "AES256"})
    assert not s3_module._etag_is_md5({"ServerSideEncryption": "aws:kms"})
    assert not s3_module._etag_is_md5({"ServerSideEncryption": "aws:kms:dsse"})
    assert not s3_module._etag_is_md5({"SSECustomerAlgorithm": "AES256"})


def _one_at_a_time(backend: Backend, **settings: Any) -> Backend:
    update = {"s3_concurrency": 1, **settings}
    return Backend(
        backend.name,
        backend.settings.model_copy(update=update),
        backend.part_size,
        backend.tamper,
        backend.tamper_manifest,
    )


async def test_resume_pages_through_list_parts(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """More parts stored than one ListParts page holds (pages of 2 here, 1,000 on AWS): every
    page is read, so none of the stored parts is sent again."""
    monkeypatch.setattr(s3_multipart, "LIST_PARTS_PAGE", 2)
    backend = _one_at_a_time(s3_backend(seaweed, monkeypatch))
    source, manifest = artifact(tmp_path, int(backend.part_size * 5.5))
    crash = Transfer(on_progress=crash_after(backend.part_size * 5))
    with pytest.raises(ConnectionAbortedError):
        await backend.storage.store(source, manifest, KEY, crash)
    retry = Transfer(resume=crash.resume)
    stored = await backend.storage.store(source, manifest, KEY, retry)

    assert parts_sent(crash) == {"1", "2", "3", "4", "5"}
    assert parts_sent(retry) == {"6"}
    assert retry.requests.count("ListParts") >= 3
    await download(stored.location, tmp_path / "fetched", backend.settings)
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()


async def test_resume_keeps_the_checkpointed_part_size(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """S3_PART_SIZE_MIB changed between attempts (5 -> 6 MiB): the parts already stored were
    cut at 5 MiB, so the retry keeps 5 MiB and sends only what is missing."""
    backend = _one_at_a_time(s3_backend(seaweed, monkeypatch))
    source, manifest = artifact(tmp_path, int(5 * MIB * 3.5))
    crash = Transfer(on_progress=crash_after(5 * MIB * 2))
    with pytest.raises(ConnectionAbortedError):
        await backend.storage.store(source, manifest, KEY, crash)
    assert crash.resume is not None and crash.resume["part_size"] == 5 * MIB

    changed = _one_at_a_time(backend, s3_part_size_mib=6)
    retry = Transfer(resume=crash.resume)
    stored = await changed.storage.store(source, manifest, KEY, retry)

    assert parts_sent(crash) == {"1", "2"} and parts_sent(retry) == {"3", "4"}
    assert "CreateMultipartUpload" not in retry.requests
    await download(stored.location, tmp_path / "fetched", backend.settings)
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()


async def test_a_redumped_artifact_starts_a_fresh_upload_and_aborts_the_old_one(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The checkpoint belongs to other bytes (the dump was redone): nothing of it is reused,
    and its multipart upload does not linger."""
    backend = _one_at_a_time(s3_backend(seaweed, monkeypatch))
    source, manifest = artifact(tmp_path, int(backend.part_size * 2.5))
    crash = Transfer(on_progress=crash_after(backend.part_size))
    with pytest.raises(ConnectionAbortedError):
        await backend.storage.store(source, manifest, KEY, crash)

    source, manifest = artifact(tmp_path, int(backend.part_size * 2.5))  # new random bytes
    retry = Transfer(resume=crash.resume)
    stored = await backend.storage.store(source, manifest, KEY, retry)

    assert "CreateMultipartUpload" in retry.requests and parts_sent(retry) == {"1", "2", "3"}
    uploads = seaweed.client().list_multipart_uploads(
        Bucket=seaweed.bucket, Prefix=backend.settings.s3_prefix
    )
    assert uploads.get("Uploads", []) == []
    await download(stored.location, tmp_path / "fetched", backend.settings)
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()
