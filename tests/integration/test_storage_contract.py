"""One contract, every backend: local directory, S3 (a real SeaweedFS) and Telegram (the Bot
API stand-in that enforces the cloud's limits).

Round trips of small and multi-part artifacts, verified downloads that refuse tampering,
resumption after a crash without re-sending what is already stored, aborts of unfinished
uploads, and clear non-retryable errors for what only a person can fix.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pyrage
import pytest

from backup.download import download
from backup.errors import ConfigurationError, IntegrityError, StorageError
from backup.settings import Settings
from backup.signing import generate_keypair
from backup.storage import Transfer, open_storage
from backup.storage.s3 import S3Storage, _b64
from devstack.seaweed import SeaweedS3
from emulators.telegram import DOWNLOAD_LIMIT, UPLOAD_LIMIT, FakeTelegramAPI
from tests.backends import (
    CHAT,
    KEY,
    TOKEN,
    Backend,
    artifact,
    crash_after,
    edited_manifest,
    local_backend,
    manifest_for,
    parts_sent,
    s3_backend,
    telegram_backend,
)


@pytest.fixture
def telegram() -> Iterator[FakeTelegramAPI]:
    # A 1 MB getFile limit makes multi-part uploads cheap; the real one is 20 MB.
    with FakeTelegramAPI(TOKEN, {CHAT}, download_limit=1_000_000) as api:
        yield api


@pytest.fixture(params=["local", "s3", "telegram"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    if request.param == "local":
        return local_backend(tmp_path)
    if request.param == "s3":
        return s3_backend(request.getfixturevalue("seaweed"), monkeypatch)
    return telegram_backend(request.getfixturevalue("telegram"))


def _remote(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "s3":
        return s3_backend(request.getfixturevalue("seaweed"), monkeypatch)
    return telegram_backend(request.getfixturevalue("telegram"))


@pytest.fixture(params=["s3", "telegram"])
def resumable(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """Backends that store in parts and resume from a checkpoint (a local copy just restarts)."""
    return _remote(request, monkeypatch)


@pytest.fixture(params=["s3", "telegram"])
def remote(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """Backends whose location names a bucket or chat."""
    return _remote(request, monkeypatch)


def signed(backend: Backend, key_file: Path) -> Backend:
    settings = backend.settings.model_copy(update={"manifest_signing_key_file": key_file})
    return dataclasses.replace(backend, settings=settings)


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    private, public = generate_keypair()
    folder = tmp_path_factory.mktemp("signing")
    (folder / "signing.pem").write_bytes(private)
    (folder / "signing.pub.pem").write_bytes(public)
    return folder / "signing.pem", folder / "signing.pub.pem"


@pytest.mark.parametrize("parts", [0.3, 2.5])
async def test_round_trip_is_byte_identical(backend: Backend, tmp_path: Path, parts: float) -> None:
    source, manifest = artifact(tmp_path, int(backend.part_size * parts))
    stored = await backend.storage.store(source, manifest, KEY, Transfer())

    fetched = tmp_path / "fetched"
    got = await download(stored.location, fetched, backend.settings)

    assert fetched.read_bytes() == source.read_bytes()
    assert got.sha256 == manifest.sha256 and got.size_bytes == manifest.size_bytes


async def test_storing_again_under_the_same_key_keeps_one_good_copy(
    backend: Backend, tmp_path: Path
) -> None:
    source, manifest = artifact(tmp_path, int(backend.part_size * 1.5))
    await backend.storage.store(source, manifest, KEY, Transfer())
    stored = await backend.storage.store(source, manifest, KEY, Transfer())
    fetched = tmp_path / "fetched"
    await download(stored.location, fetched, backend.settings)
    assert fetched.read_bytes() == source.read_bytes()


async def test_a_tampered_artifact_is_refused(backend: Backend, tmp_path: Path) -> None:
    source, manifest = artifact(tmp_path, int(backend.part_size * 1.5))
    stored = await backend.storage.store(source, manifest, KEY, Transfer())
    await backend.tamper(stored)
    fetched = tmp_path / "fetched"
    with pytest.raises(IntegrityError):
        await download(stored.location, fetched, backend.settings)
    assert not fetched.exists() and not list(tmp_path.glob("fetched*"))


async def test_a_crash_between_parts_resumes_without_resending(
    resumable: Backend, tmp_path: Path
) -> None:
    source, manifest = artifact(tmp_path, int(resumable.part_size * 3.5))
    crash = Transfer(on_progress=crash_after(resumable.part_size))
    with pytest.raises(ConnectionAbortedError):
        await resumable.storage.store(source, manifest, KEY, crash)
    assert crash.resume is not None, "nothing was checkpointed before the crash"
    retry = Transfer(resume=crash.resume)
    stored = await resumable.storage.store(source, manifest, KEY, retry)

    before, after = parts_sent(crash), parts_sent(retry)
    assert before, "the crash came before any part was stored"
    assert not before & after, f"parts sent twice: {before & after}"
    assert len(after) < 4
    fetched = tmp_path / "fetched"
    await download(stored.location, fetched, resumable.settings)
    assert fetched.read_bytes() == source.read_bytes()


async def test_s3_abort_removes_unfinished_multipart_uploads(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = s3_backend(seaweed, monkeypatch)
    source, manifest = artifact(tmp_path, int(backend.part_size * 2.5))
    with pytest.raises(ConnectionAbortedError):
        await backend.storage.store(source, manifest, KEY, Transfer(on_progress=crash_after(1)))
    prefix = backend.settings.s3_prefix
    s3 = seaweed.client()
    before = s3.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix)
    assert len(before.get("Uploads", [])) == 1
    assert await backend.storage.abort_incomplete(KEY.removesuffix(".dump.zst")) == 1
    after = s3.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix)
    assert after.get("Uploads", []) == []


async def test_s3_wrong_credentials_and_missing_bucket_are_permanent(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = s3_backend(seaweed, monkeypatch)
    source, manifest = artifact(tmp_path, 1000)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(StorageError) as caught:
        await backend.storage.store(source, manifest, KEY, Transfer())
    message = str(caught.value)
    assert not caught.value.retryable and "credentials" in message
    assert repr(seaweed.bucket) in message and seaweed.endpoint_url in message
    assert "AWS_SECRET_ACCESS_KEY" in message and "wrong-secret" not in message

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    missing = dataclasses.replace(
        backend, settings=backend.settings.model_copy(update={"s3_bucket": "no-such-bucket"})
    )
    with pytest.raises(StorageError) as caught:
        await missing.storage.store(source, manifest, KEY, Transfer())
    assert not caught.value.retryable and "no-such-bucket" in str(caught.value)


async def test_s3_unknown_access_key_is_permanent_and_names_the_bucket(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The dev store knows one identity; any other access key id is unknown to it."""
    backend = s3_backend(seaweed, monkeypatch)
    source, manifest = artifact(tmp_path, 1000)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "EBUNKNOWN" + os.urandom(5).hex().upper())
    with pytest.raises(StorageError) as caught:
        await backend.storage.store(source, manifest, KEY, Transfer())
    message = str(caught.value)
    assert not caught.value.retryable and "AWS_ACCESS_KEY_ID" in message
    assert repr(seaweed.bucket) in message and seaweed.endpoint_url in message
    assert seaweed.secret_key not in message


def _missing_location(backend: Backend) -> str:
    if backend.name == "local":
        return (
            (backend.settings.local_storage_dir / "backups/acme/gone.dump.zst").resolve().as_uri()
        )
    if backend.name == "s3":
        bucket, prefix = backend.settings.s3_bucket, backend.settings.s3_prefix
        return f"s3://{bucket}/{prefix}/backups/acme/gone.dump.zst"
    return f"telegram://{CHAT}/424242?file_id=BQACAgIAAxkBAAIgone"


async def test_a_missing_backup_is_a_permanent_error_naming_the_location(
    backend: Backend, tmp_path: Path
) -> None:
    source, manifest = artifact(tmp_path, 1000)
    await backend.storage.store(source, manifest, KEY, Transfer())  # the folder is not empty
    location = _missing_location(backend)
    with pytest.raises(StorageError) as caught:
        await download(location, tmp_path / "fetched", backend.settings)
    assert not caught.value.retryable
    assert f"no backup at {location}" in str(caught.value) and "check the location" in str(
        caught.value
    )
    assert not list(tmp_path.glob("fetched*"))


async def test_download_takes_the_bucket_or_chat_from_the_location(
    remote: Backend, tmp_path: Path
) -> None:
    """S3_BUCKET / TELEGRAM_CHAT_ID unset (a restore host): the location carries them."""
    source, manifest = artifact(tmp_path, int(remote.part_size * 1.5))
    stored = await remote.storage.store(source, manifest, KEY, Transfer())
    readers = remote.settings.model_copy(update={"s3_bucket": None, "telegram_chat_id": None})
    await download(stored.location, tmp_path / "fetched", readers)
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()


async def test_telegram_honours_429_retry_after(telegram: FakeTelegramAPI, tmp_path: Path) -> None:
    backend = telegram_backend(telegram)
    source, manifest = artifact(tmp_path, 1000)
    telegram.rate_limit_next("sendDocument", retry_after=1, times=1)
    await backend.storage.store(source, manifest, KEY, Transfer())
    assert min(telegram.waits_after_rate_limit("sendDocument")) >= 1.0
    assert len(telegram.documents) == 2  # the part and the manifest, each once


async def test_telegram_bad_token_is_permanent_and_redacted(
    telegram: FakeTelegramAPI, tmp_path: Path
) -> None:
    backend = telegram_backend(telegram)
    bad_token = "999999:not-the-token"
    settings = Settings.model_validate(
        {**backend.settings.model_dump(), "telegram_bot_token": bad_token}
    )
    source, manifest = artifact(tmp_path, 1000)
    with pytest.raises(StorageError) as caught:
        await open_storage(settings).store(source, manifest, KEY, Transfer())
    assert not caught.value.retryable and "TELEGRAM_BOT_TOKEN" in str(caught.value)
    assert bad_token not in str(caught.value)


async def test_telegram_parts_respect_the_download_limit(
    telegram: FakeTelegramAPI, tmp_path: Path
) -> None:
    backend = telegram_backend(telegram)
    source, manifest = artifact(tmp_path, 2_500_000)
    stored = await backend.storage.store(source, manifest, KEY, Transfer())
    sizes = [len(d.data) for d in telegram.documents.values()]
    assert max(sizes) <= 1_000_000 and len(sizes) == 4  # 3 parts + manifest
    assert stored.location.startswith(f"telegram://{CHAT}/")


async def test_s3_refuses_a_part_whose_checksum_does_not_match(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The SHA-256 additional checksum travels with every part and the store verifies it."""
    backend = s3_backend(seaweed, monkeypatch)
    source, manifest = artifact(tmp_path, int(backend.part_size * 1.5))
    monkeypatch.setattr(
        S3Storage, "_part_checksum", lambda self, sha256: {"ChecksumSHA256": _b64(b"\0" * 32)}
    )
    with pytest.raises(StorageError, match=r"BadDigest|[Cc]hecksum"):
        await backend.storage.store(source, manifest, KEY, Transfer())


async def test_signed_manifest_verifies_and_a_forged_one_is_refused(
    backend: Backend, tmp_path: Path, signing_key: tuple[Path, Path]
) -> None:
    backend = signed(backend, signing_key[0])
    source, manifest = artifact(tmp_path, int(backend.part_size * 1.5))
    stored = await backend.storage.store(source, manifest, KEY, Transfer())
    readers = backend.settings.model_copy(
        update={"manifest_signing_key_file": None, "manifest_verify_key_file": signing_key[1]}
    )
    await download(stored.location, tmp_path / "fetched", readers)  # verifies

    await backend.tamper_manifest(stored)
    with pytest.raises(IntegrityError, match="signature"):
        await download(stored.location, tmp_path / "forged", readers)
    assert not (tmp_path / "forged").exists()


async def test_an_unsigned_manifest_is_refused_when_a_key_is_expected(
    backend: Backend, tmp_path: Path, signing_key: tuple[Path, Path]
) -> None:
    source, manifest = artifact(tmp_path, 1000)
    stored = await backend.storage.store(source, manifest, KEY, Transfer())  # not signed
    readers = backend.settings.model_copy(update={"manifest_verify_key_file": signing_key[1]})
    with pytest.raises(IntegrityError, match="not signed"):
        await download(stored.location, tmp_path / "fetched", readers)


async def test_openssl_verifies_a_manifest_signature(
    tmp_path: Path, signing_key: tuple[Path, Path]
) -> None:
    """The README recipe: standard tools, nothing of this project."""
    backend = signed(local_backend(tmp_path), signing_key[0])
    source, manifest = artifact(tmp_path, 1000)
    await backend.storage.store(source, manifest, KEY, Transfer())
    manifest_path = backend.settings.local_storage_dir / (KEY + ".manifest.json")
    verify = [
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        str(signing_key[1]),
        "-rawin",
        "-in",
        str(manifest_path),
        "-sigfile",
        f"{manifest_path}.sig",
    ]
    assert subprocess.run(verify, capture_output=True, text=True).returncode == 0
    manifest_path.write_bytes(edited_manifest(manifest_path.read_bytes()))
    assert subprocess.run(verify, capture_output=True, text=True).returncode != 0


async def test_an_encrypted_artifact_is_stored_without_its_plaintext(
    backend: Backend, tmp_path: Path
) -> None:
    """What the bucket or the chat holds is the age ciphertext, byte for byte."""
    identity = pyrage.x25519.Identity.generate()
    marker = b"PLAINTEXT-MARKER-ROW-42;"
    plaintext = marker * (backend.part_size // len(marker) * 2)
    source = tmp_path / "artifact.dump.zst.age"
    source.write_bytes(pyrage.encrypt(plaintext, [identity.to_public()]))
    manifest = manifest_for(source).model_copy(update={"encryption": "age-x25519"})
    stored = await backend.storage.store(source, manifest, KEY, Transfer())

    fetched = tmp_path / "fetched"
    await download(stored.location, fetched, backend.settings)
    raw = fetched.read_bytes()
    assert marker not in raw and raw.startswith(b"age-encryption.org/v1")
    assert pyrage.decrypt(raw, [identity]) == plaintext


@pytest.mark.parametrize("api_url", [None, "https://api.telegram.org/"])
def test_telegram_cloud_refuses_parts_getfile_can_not_serve(api_url: str | None) -> None:
    """Above 20 MB the cloud's getFile would refuse the parts: fail at start, not at restore."""
    cloud = {} if api_url is None else {"telegram_api_url": api_url}
    settings = Settings(
        storage_backend="telegram",
        telegram_bot_token=TOKEN,  # type: ignore[arg-type]
        telegram_chat_id=str(CHAT),
        telegram_part_bytes=DOWNLOAD_LIMIT + 1,
        **cloud,  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigurationError) as caught:
        open_storage(settings)
    assert "TELEGRAM_PART_BYTES" in str(caught.value) and "TELEGRAM_API_URL" in str(caught.value)
    assert TOKEN not in str(caught.value)
    open_storage(settings.model_copy(update={"telegram_part_bytes": DOWNLOAD_LIMIT}))
    self_hosted = {"telegram_api_url": "http://bot-api.internal:8081"}
    open_storage(settings.model_copy(update={**self_hosted, "telegram_part_bytes": 2000 * 1000**2}))


async def test_telegram_default_part_size_against_the_real_limits(tmp_path: Path) -> None:
    """The stand-in with Telegram's own limits (50 MB upload, 20 MB getFile) and the default
    TELEGRAM_PART_BYTES: a 45 MB artifact goes up in three parts and comes back whole."""
    with FakeTelegramAPI(TOKEN, {CHAT}) as api:
        assert (api.upload_limit, api.download_limit) == (UPLOAD_LIMIT, DOWNLOAD_LIMIT)
        settings = telegram_backend(api).settings.model_copy(
            update={"telegram_part_bytes": Settings().telegram_part_bytes}
        )
        source, manifest = artifact(tmp_path, 45_000_000)
        stored = await open_storage(settings).store(source, manifest, KEY, Transfer())
        await download(stored.location, tmp_path / "fetched", settings)
        sizes = sorted(len(d.data) for d in api.documents.values())
    assert len(sizes) == 4 and sizes[-1] == settings.telegram_part_bytes  # 3 parts + manifest
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()


def _once(action: Callable[[], None]) -> Callable[[int], None]:
    """An on_progress that runs `action` after the first part, once."""
    done = False

    def on_progress(_: int) -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return on_progress


@pytest.mark.parametrize("status", [500, 502])
async def test_telegram_5xx_is_retryable_and_the_retry_resumes(
    telegram: FakeTelegramAPI, tmp_path: Path, status: int
) -> None:
    backend = telegram_backend(telegram)
    source, manifest = artifact(tmp_path, int(backend.part_size * 2.5))
    first = Transfer(on_progress=_once(lambda: telegram.fail_next("sendDocument", status)))
    with pytest.raises(StorageError) as caught:
        await backend.storage.store(source, manifest, KEY, first)
    assert caught.value.retryable and str(status) in str(caught.value)
    retry = Transfer(resume=first.resume)
    stored = await backend.storage.store(source, manifest, KEY, retry)

    assert parts_sent(first) == {"1", "2"} and parts_sent(retry) == {"2", "3"}
    assert len(telegram.documents) == 4  # the refused part 2 was not stored
    await download(stored.location, tmp_path / "fetched", backend.settings)
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()


async def test_telegram_a_lost_answer_posts_a_part_twice_but_the_manifest_names_one(
    telegram: FakeTelegramAPI, tmp_path: Path
) -> None:
    """Telegram stored part 2, then the answer was lost (504): the retry posts it again (no
    idempotency key in the Bot API), and the manifest lists exactly one message per part."""
    backend = telegram_backend(telegram)
    source, manifest = artifact(tmp_path, int(backend.part_size * 2.5))
    first = Transfer(on_progress=_once(lambda: telegram.lose_answer_next("sendDocument")))
    with pytest.raises(StorageError):
        await backend.storage.store(source, manifest, KEY, first)
    retry = Transfer(resume=first.resume)
    stored = await backend.storage.store(source, manifest, KEY, retry)

    captions = [d.caption or "" for d in telegram.documents.values()]
    assert sum("part 2/3" in c for c in captions) == 2  # the known limitation
    fetched = await download(stored.location, tmp_path / "fetched", backend.settings)
    assert fetched.parts is not None and [p.index for p in fetched.parts] == [0, 1, 2]
    assert len({p.message_id for p in fetched.parts}) == 3
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()


class Killed(Exception):
    """The worker died right after a checkpoint."""


@pytest.mark.parametrize("after", ["signature", "manifest"])
async def test_telegram_retry_does_not_post_signature_or_manifest_again(
    telegram: FakeTelegramAPI, tmp_path: Path, signing_key: tuple[Path, Path], after: str
) -> None:
    backend = signed(telegram_backend(telegram), signing_key[0])
    source, manifest = artifact(tmp_path, int(backend.part_size * 1.5))

    def killed_after(state: dict[str, object]) -> None:
        if after in state:
            raise Killed(after)

    first = Transfer(on_checkpoint=killed_after)
    with pytest.raises(Killed):
        await backend.storage.store(source, manifest, KEY, first)
    retry = Transfer(resume=first.resume)
    stored = await backend.storage.store(source, manifest, KEY, retry)

    names = [d.file_name or "" for d in telegram.documents.values()]
    assert sum(n.endswith(".manifest.json.sig") for n in names) == 1
    assert sum(n.endswith(".manifest.json") for n in names) == 1
    assert len(names) == 4  # 2 parts, signature, manifest
    assert parts_sent(retry) == set()
    readers = backend.settings.model_copy(update={"manifest_verify_key_file": signing_key[1]})
    await download(stored.location, tmp_path / "fetched", readers)


async def test_telegram_resume_keeps_the_checkpointed_part_size(
    telegram: FakeTelegramAPI, tmp_path: Path
) -> None:
    """TELEGRAM_PART_BYTES changed between attempts: the parts posted stay valid."""
    backend = telegram_backend(telegram)
    source, manifest = artifact(tmp_path, int(backend.part_size * 2.5))
    crash = Transfer(on_progress=crash_after(backend.part_size))
    with pytest.raises(ConnectionAbortedError):
        await backend.storage.store(source, manifest, KEY, crash)
    smaller = backend.settings.model_copy(update={"telegram_part_bytes": 600_000})
    retry = Transfer(resume=crash.resume)
    stored = await open_storage(smaller).store(source, manifest, KEY, retry)

    assert parts_sent(crash) == {"1"} and parts_sent(retry) == {"2", "3"}
    assert len(telegram.documents) == 4
    await download(stored.location, tmp_path / "fetched", smaller)
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()


def _assert_no_token(error: BaseException, token: str) -> None:
    """Nowhere in the error, its causes and contexts, their args and the printed traceback."""
    assert token not in "".join(traceback.format_exception(error))
    seen: BaseException | None = error
    while seen is not None:
        assert token not in str(seen) and token not in repr(seen)
        assert all(token not in repr(arg) for arg in seen.args)
        seen = seen.__cause__ or seen.__context__


async def test_telegram_token_is_not_in_errors_httpx_raises(
    telegram: FakeTelegramAPI, tmp_path: Path
) -> None:
    """httpx's own errors: a refused connection, and a status error whose message is the
    download URL (which holds the token)."""
    backend = telegram_backend(telegram)
    source, manifest = artifact(tmp_path, 1000)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    unreachable = backend.settings.model_copy(
        update={"telegram_api_url": f"http://127.0.0.1:{closed}"}
    )
    with pytest.raises(StorageError) as caught:
        await open_storage(unreachable).store(source, manifest, KEY, Transfer())
    assert caught.value.retryable
    _assert_no_token(caught.value, TOKEN)

    stored = await backend.storage.store(source, manifest, KEY, Transfer())
    telegram.fail_next("download", 500)
    with pytest.raises(StorageError) as caught:
        await download(stored.location, tmp_path / "fetched", backend.settings)
    assert "<TELEGRAM_BOT_TOKEN>" in str(caught.value)  # httpx's message named the URL
    _assert_no_token(caught.value, TOKEN)
