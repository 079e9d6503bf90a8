"""The storage backends as the contract tests drive them (local, S3 on SeaweedFS, Telegram on
the Bot API emulator), with a way to tamper with each, and artifacts to store."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from backup.files import sha256_of
from backup.manifest import Manifest
from backup.models import Compression, DumpFormat
from backup.settings import Settings
from backup.storage import Storage, Stored, Transfer, open_storage
from devstack.seaweed import SeaweedS3
from emulators.telegram import FakeTelegramAPI

KEY = "backups/acme/20261126T120000Z-abcdef12.dump.zst"
TOKEN = "123456:test-token-secret"
CHAT = -1001234
MIB = 1024 * 1024


@dataclass
class Backend:
    name: str
    settings: Settings
    part_size: int  # bytes per part (S3 multipart part, Telegram message)
    tamper: Callable[[Stored], Awaitable[None]]
    tamper_manifest: Callable[[Stored], Awaitable[None]]

    @property
    def storage(self) -> Storage:
        return open_storage(self.settings)


def local_backend(tmp_path: Path) -> Backend:
    settings = Settings(storage_backend="local", local_storage_dir=tmp_path / "store")

    async def tamper(stored: Stored) -> None:
        path = settings.local_storage_dir / KEY
        flip_middle_byte(path)

    async def tamper_manifest(stored: Stored) -> None:
        path = settings.local_storage_dir / (KEY + ".manifest.json")
        path.write_bytes(edited_manifest(path.read_bytes()))

    return Backend("local", settings, 1 * MIB, tamper, tamper_manifest)


def s3_backend(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> Backend:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        storage_backend="s3",
        s3_bucket=seaweed.bucket,
        s3_endpoint_url=seaweed.endpoint_url,
        s3_region="us-east-1",
        s3_part_size_mib=5,
        s3_prefix=f"contract-{os.urandom(4).hex()}",
    )

    async def tamper(stored: Stored) -> None:
        key = stored.location.removeprefix(f"s3://{seaweed.bucket}/")
        s3 = seaweed.client()
        body = bytearray(s3.get_object(Bucket=seaweed.bucket, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0xFF
        s3.put_object(Bucket=seaweed.bucket, Key=key, Body=bytes(body))

    async def tamper_manifest(stored: Stored) -> None:
        key = stored.manifest_location.removeprefix(f"s3://{seaweed.bucket}/")
        s3 = seaweed.client()
        body = s3.get_object(Bucket=seaweed.bucket, Key=key)["Body"].read()
        s3.put_object(Bucket=seaweed.bucket, Key=key, Body=edited_manifest(body))

    return Backend("s3", settings, 5 * MIB, tamper, tamper_manifest)


def s3_parts_settings(
    settings: Settings,
    seaweed: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    **update: object,
) -> Settings:
    """`settings` storing to SeaweedFS in 5 MiB parts (the smallest S3 allows) under a fresh
    `prefix-<random>`, its credentials in the environment."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return settings.model_copy(
        update={
            "storage_backend": "s3",
            "s3_bucket": seaweed.bucket,
            "s3_endpoint_url": seaweed.endpoint_url,
            "s3_region": "us-east-1",
            "s3_part_size_mib": 5,
            "s3_prefix": f"{prefix}-{os.urandom(4).hex()}",
            **update,
        }
    )


def telegram_backend(api: FakeTelegramAPI) -> Backend:
    settings = Settings(
        storage_backend="telegram",
        telegram_bot_token=TOKEN,  # type: ignore[arg-type]
        telegram_chat_id=str(CHAT),
        telegram_api_url=api.base_url,
        telegram_part_bytes=900_000,
    )

    async def tamper(stored: Stored) -> None:
        first_part = min(api.documents)
        file_id = api.documents[first_part].file_id
        original = api._files[file_id]
        data = bytearray(original.data)
        data[len(data) // 2] ^= 0xFF
        api._files[file_id] = dataclasses.replace(original, data=bytes(data))

    async def tamper_manifest(stored: Stored) -> None:
        file_id = parse_qs(urlparse(stored.location).query)["file_id"][0]
        original = api._files[file_id]
        api._files[file_id] = dataclasses.replace(original, data=edited_manifest(original.data))

    return Backend("telegram", settings, 900_000, tamper, tamper_manifest)


def artifact(tmp_path: Path, size: int) -> tuple[Path, Manifest]:
    path = tmp_path / "artifact.dump.zst"
    path.write_bytes(os.urandom(size))
    return path, manifest_for(path)


def manifest_for(path: Path) -> Manifest:
    now = datetime.now(UTC)
    size = path.stat().st_size
    return Manifest(
        project_id="acme",
        project_name="Acme",
        schema_name="acme",
        format=DumpFormat.CUSTOM,
        compression=Compression.ZSTD,
        artifact=path.name,
        size_bytes=size,
        raw_bytes=size * 3,
        sha256=sha256_of(path),
        tables=["t"],
        table_count=1,
        pg_dump_version="pg_dump 18",
        server_version="18",
        started_at=now,
        finished_at=now,
        dump_seconds=0.1,
    )


def edited_manifest(manifest: bytes) -> bytes:
    """A plausible forgery: the same manifest claiming another schema."""
    return manifest.replace(b'"schema_name": "acme"', b'"schema_name": "evil"')


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def crash_after(limit: int) -> Callable[[int], None]:
    def on_progress(done: int) -> None:
        if done >= limit:
            raise ConnectionAbortedError("worker killed")

    return on_progress


def parts_sent(transfer: Transfer) -> set[str]:
    """Part numbers the attempt stored: UploadPart(n) for S3, sendDocument(n) for Telegram
    (not sendDocument(signature) or sendDocument(manifest))."""
    calls = (r.removesuffix(")").split("(") for r in transfer.requests if r.endswith(")"))
    return {
        arg for method, arg in calls if method in ("UploadPart", "sendDocument") and arg.isdigit()
    }
