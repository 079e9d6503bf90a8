"""The store step (store_artifact, patch store-step) against the real PostgreSQL and SeaweedFS:
it verifies, uploads (completing the upload the dump began with its parts) and removes the
run's spool; an artifact altered on the spool is never made visible and the cleanup aborts the
parts the dump sent; a store killed before completing verifies again and resumes. Then the whole
workflow through a real worker, to S3 and to local storage: no spool, no unfinished upload, and
no verify, upload or cleanup activity of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.store as store_module
import activities.verify as verify_module
from activities.cleanup import CleanupActivities
from activities.dump import DumpActivities
from activities.store import StoreActivities
from backup.download import download
from backup.files import sha256_of
from backup.models import (
    CleanupRequest,
    Compression,
    DumpedArtifact,
    DumpFormat,
    DumpSpec,
    ExportRequest,
    ExportResult,
    Project,
    StoreRequest,
)
from backup.settings import Settings
from backup.storage import Transfer
from backup.storage.s3 import S3Storage
from client import connect, start_export
from devstack.postgres import PostgresServer
from devstack.seaweed import SeaweedS3
from devstack.seed import register_project
from devstack.stack import DevStack
from tests.backends import s3_parts_settings
from tests.dumps import random_blobs_table

SCHEMA = "store_step"
RUN_KEY = "run-store-step"
MIB = 1024 * 1024


def random_table(url: str, schema: str) -> None:
    """~12 MiB of random bytes (incompressible): two 5 MiB parts and a last one."""
    random_blobs_table(url, schema, 190)


@pytest.fixture(scope="module")
def schema(postgres: PostgresServer) -> str:
    random_table(postgres.url(), SCHEMA)
    return SCHEMA


@pytest.fixture
def s3_settings(
    settings: Settings, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    return s3_parts_settings(settings, seaweed, monkeypatch, "store")


def spec(schema: str) -> DumpSpec:
    return DumpSpec(
        project=Project(project_id=schema, name=schema, schema_name=schema),
        format=DumpFormat.CUSTOM,
        compression=Compression.ZSTD,
        run_key=RUN_KEY,
        key_stem=f"backups/{schema}/20261202T120000Z-5705e5e5",
    )


def store_request(dumped: DumpedArtifact, schema: str) -> StoreRequest:
    return StoreRequest(artifact=dumped, key_stem=spec(schema).key_stem, run_key=RUN_KEY)


def uploads(seaweed: SeaweedS3, settings: Settings) -> list[dict[str, Any]]:
    answer = seaweed.client().list_multipart_uploads(
        Bucket=seaweed.bucket, Prefix=settings.s3_prefix
    )
    return list(answer.get("Uploads", []))


def visible(seaweed: SeaweedS3, settings: Settings) -> list[str]:
    answer = seaweed.client().list_objects_v2(Bucket=seaweed.bucket, Prefix=settings.s3_prefix)
    return [o["Key"] for o in answer.get("Contents", [])]


async def dump(settings: Settings, schema: str) -> DumpedArtifact:
    dumped = await ActivityEnvironment().run(DumpActivities(settings).dump_schema, spec(schema))
    assert dumped.size_bytes > 2 * 5 * MIB
    return dumped


async def test_store_verifies_completes_the_upload_and_removes_the_spool(
    s3_settings: Settings, schema: str, seaweed: SeaweedS3, tmp_path: Path
) -> None:
    dumped = await dump(s3_settings, schema)
    assert len(uploads(seaweed, s3_settings)) == 1, "the dump sends parts while it runs"
    assert visible(seaweed, s3_settings) == []
    store = StoreActivities(s3_settings).store_artifact
    stored = await ActivityEnvironment().run(store, store_request(dumped, schema))
    assert uploads(seaweed, s3_settings) == []
    assert not (s3_settings.spool_dir / RUN_KEY).exists()
    manifest = await download(stored.location, tmp_path / "fetched", s3_settings)
    assert manifest.sha256 == dumped.sha256 == sha256_of(tmp_path / "fetched")


async def test_to_local_storage_the_spool_file_is_stored_by_a_link_not_a_copy(
    settings: Settings, schema: str
) -> None:
    local = settings.model_copy(update={"storage_backend": "local"})
    dumped = await dump(local, schema)
    spooled = Path(dumped.artifact_path).stat().st_ino
    store = StoreActivities(local).store_artifact
    stored = await ActivityEnvironment().run(store, store_request(dumped, schema))
    target = Path(stored.location.removeprefix("file://"))
    assert target.stat().st_ino == spooled  # the dumped file itself, verified, now stored
    assert sha256_of(target) == dumped.sha256
    assert not (local.spool_dir / RUN_KEY).exists()
    assert not list(target.parent.glob("*.partial"))


async def test_an_altered_artifact_is_never_visible_and_cleanup_aborts_its_parts(
    s3_settings: Settings, schema: str, seaweed: SeaweedS3
) -> None:
    dumped = await dump(s3_settings, schema)
    artifact = Path(dumped.artifact_path)
    with artifact.open("r+b") as f:  # one byte flipped on the spool after the dump
        f.seek(dumped.size_bytes // 2)
        byte = f.read(1)
        f.seek(dumped.size_bytes // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    store = StoreActivities(s3_settings).store_artifact
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(store, store_request(dumped, schema))
    assert caught.value.type == "ArtifactCorrupted" and caught.value.non_retryable
    assert visible(seaweed, s3_settings) == []
    assert len(uploads(seaweed, s3_settings)) == 1  # the parts the dump sent: cleanup's job
    cleanup = CleanupActivities(s3_settings).cleanup_spool_v2
    request = CleanupRequest(run_key=RUN_KEY, key_stem=spec(schema).key_stem)
    assert await ActivityEnvironment().run(cleanup, request)
    assert uploads(seaweed, s3_settings) == [] and visible(seaweed, s3_settings) == []
    assert not (s3_settings.spool_dir / RUN_KEY).exists()


async def test_a_store_killed_before_completing_verifies_again_and_resumes(
    s3_settings: Settings, schema: str, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    dumped = await dump(s3_settings, schema)
    verified: list[str] = []
    real_verify = verify_module._verify

    def counted(artifact: DumpedArtifact, max_bytes: int) -> None:
        verified.append(artifact.file_name)
        real_verify(artifact, max_bytes)

    monkeypatch.setattr(verify_module, "_verify", counted)
    transfers: list[Transfer] = []
    real_store = S3Storage.store

    async def recorded(self: S3Storage, *args: Any) -> Any:
        transfers.append(args[-1])
        return await real_store(self, *args)

    monkeypatch.setattr(S3Storage, "store", recorded)
    store = StoreActivities(s3_settings).store_artifact
    with monkeypatch.context() as crash:

        async def dies(*_: Any) -> None:
            raise OSError("worker killed")

        crash.setattr(S3Storage, "_complete", dies)
        with pytest.raises(OSError, match="worker killed"):
            await ActivityEnvironment().run(store, store_request(dumped, schema))
    assert visible(seaweed, s3_settings) == [] and len(verified) == 1
    assert (s3_settings.spool_dir / RUN_KEY).exists(), "a failed store keeps the spool"

    await ActivityEnvironment().run(store, store_request(dumped, schema))
    assert len(verified) == 2, "a retried store verifies again before it uploads"
    retry = transfers[-1]
    assert retry.resume is not None and "CreateMultipartUpload" not in retry.requests
    assert uploads(seaweed, s3_settings) == []
    assert not (s3_settings.spool_dir / RUN_KEY).exists()


async def test_a_spool_that_can_not_be_removed_never_fails_a_stored_backup(
    s3_settings: Settings, schema: str, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a failing cleanup step before: the spool is left to the start-up sweep."""
    dumped = await dump(s3_settings, schema)

    def refuses(*_: Any) -> bool:
        raise PermissionError("spool not writable")

    monkeypatch.setattr(store_module, "remove_run", refuses)
    store = StoreActivities(s3_settings).store_artifact
    stored = await ActivityEnvironment().run(store, store_request(dumped, schema))
    assert stored.location.endswith(dumped.file_name)
    assert len(visible(seaweed, s3_settings)) >= 2 and uploads(seaweed, s3_settings) == []
    assert Path(dumped.artifact_path).exists()


# --- the whole workflow, through a real worker ----------------------------------------------


@pytest.fixture(scope="module")
def project(stack: DevStack) -> str:
    random_table(stack.postgres.url(), SCHEMA)
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        register_project(conn, SCHEMA, SCHEMA)
    return SCHEMA


async def backup(
    stack: DevStack, tmp_path: Path, queue: str, **env: str
) -> tuple[ExportResult, WorkflowHandle[Any, Any]]:
    overrides = {
        "TEMPORAL_TASK_QUEUE": queue,
        "HOST_ID": f"{queue}-host",
        "METRICS_PORT": "0",
        "SPOOL_DIR": str(tmp_path / "spool"),
        "S3_PART_SIZE_MIB": "5",
        "SMALL_SCHEMA_MAX_BYTES": "0",  # the pinned steps (tests/integration/test_small_schema.py)
        **env,
    }
    worker = stack.spawn_worker(tmp_path / "worker.log", overrides)
    try:
        client: Client = await connect(stack.temporal.address, "default")
        settings = stack.settings().model_copy(update={"temporal_task_queue": queue})
        handle = await start_export(client, settings, ExportRequest(project_id=SCHEMA))
        return await handle.result(), handle
    finally:
        worker.terminate()
        worker.wait(timeout=60)


async def activities_scheduled(handle: WorkflowHandle[Any, Any]) -> list[str]:
    history = json.loads((await handle.fetch_history()).to_json())
    return [
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in history["events"]
        if "activityTaskScheduledEventAttributes" in e
    ]


def spool_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]


async def test_a_backup_to_s3_leaves_no_spool_and_no_unfinished_upload(
    stack: DevStack, project: str, tmp_path: Path
) -> None:
    assert stack.s3 is not None
    result, handle = await backup(stack, tmp_path, "store-step-s3", STORAGE_BACKEND="s3")
    assert result.location.startswith("s3://")
    assert spool_files(tmp_path) == []
    s3: Any = stack.s3.client()
    listed = s3.list_multipart_uploads(Bucket=stack.s3.bucket, Prefix=f"backups/{project}/")
    assert listed.get("Uploads", []) == []
    scheduled = await activities_scheduled(handle)
    assert [a for a in scheduled if a != "deliver_notification_v2"] == [
        "dump_schema",
        "store_artifact",
    ]
    manifest = await download(result.location, tmp_path / "fetched", stack.settings())
    assert manifest.sha256 == result.sha256


async def test_a_backup_to_local_storage_leaves_no_spool(
    stack: DevStack, project: str, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    result, handle = await backup(
        stack, tmp_path, "store-step-local", STORAGE_BACKEND="local", LOCAL_STORAGE_DIR=str(storage)
    )
    stored = Path(result.location.removeprefix("file://"))
    assert stored.is_relative_to(storage) and sha256_of(stored) == result.sha256
    assert spool_files(tmp_path) == []
    scheduled = await activities_scheduled(handle)
    assert [a for a in scheduled if a != "deliver_notification_v2"] == [
        "dump_schema",
        "store_artifact",
    ]
