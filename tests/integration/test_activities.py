"""Each activity on its own (ActivityEnvironment) against the real PostgreSQL: error mapping,
heartbeats, cancellation, integrity checks, idempotent upload and cleanup."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pyrage
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.upload as upload_module
import backup.storage.s3 as s3_module
from activities.cleanup import CleanupActivities
from activities.dump import DumpActivities
from activities.notify import NotifyActivities
from activities.projects import ProjectActivities
from activities.upload import UploadActivities
from activities.verify import VerifyActivities
from backup.download import download
from backup.files import sha256_of
from backup.manifest import Manifest
from backup.models import (
    BackupEvent,
    Compression,
    DumpedArtifact,
    DumpFormat,
    DumpSpec,
    Notification,
    Project,
    Step,
)
from backup.settings import Settings
from backup.storage import Transfer
from devstack.seaweed import SeaweedS3

RUN_KEY = "run-0001"


def spec(schema: str = "umbrella", fmt: DumpFormat = DumpFormat.CUSTOM) -> DumpSpec:
    project = Project(project_id=schema, name=schema, schema_name=schema)
    return DumpSpec(
        project=project,
        format=fmt,
        compression=Compression.ZSTD,
        run_key=RUN_KEY,
        key_stem=f"backups/{schema}/20261126T120000Z-abcdef12",
    )


@pytest.mark.parametrize(("project_id", "schema"), [("acme", "acme"), ("globex", "tenant_globex")])
async def test_validate_resolves_the_schema(
    settings: Settings, project_id: str, schema: str
) -> None:
    project = await ActivityEnvironment().run(
        ProjectActivities(settings).validate_project, project_id
    )
    assert project.schema_name == schema


@pytest.mark.parametrize(
    ("project_id", "error_type", "words"),
    [
        ("initech", "ProjectInactive", "SUSPENDED"),
        ("hooli", "ProjectInactive", "DELETED"),
        ("ghost", "ProjectNotFound", "not found"),
    ],
)
async def test_validate_refuses_without_retry(
    settings: Settings, project_id: str, error_type: str, words: str
) -> None:
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(ProjectActivities(settings).validate_project, project_id)
    assert caught.value.type == error_type and caught.value.non_retryable
    assert project_id in caught.value.message and words in caught.value.message


async def test_validate_with_bad_credentials_says_what_to_fix(settings: Settings) -> None:
    url = settings.database_url.get_secret_value()
    bad = settings.model_copy(
        update={"database_url": SecretStr(url.replace("postgres:", "postgres:x", 1))}
    )
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(ProjectActivities(bad).validate_project, "acme")
    assert caught.value.type == "ConfigurationError" and caught.value.non_retryable
    assert "DATABASE_URL" in caught.value.message


async def dump_with_heartbeats(settings: Settings, s: DumpSpec) -> tuple[DumpedArtifact, list[Any]]:
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details[0])
    return await env.run(DumpActivities(settings).dump_schema, s), beats


async def test_dump_heartbeats_bytes_and_spools_artifact_and_manifest(settings: Settings) -> None:
    artifact, beats = await dump_with_heartbeats(settings, spec())
    assert beats and beats[0]["step"] == "dumping"
    assert Path(artifact.artifact_path).stat().st_size == artifact.size_bytes
    assert Path(artifact.manifest_path).exists()
    assert artifact.file_name == "20261126T120000Z-abcdef12.dump.zst"
    assert artifact.host_queue == "export-backup@test-host"
    assert artifact.table_count > 0


async def test_a_retried_dump_replaces_the_previous_attempt(settings: Settings) -> None:
    first, _ = await dump_with_heartbeats(settings, spec())
    Path(first.artifact_path).write_bytes(b"half-written garbage")
    second, _ = await dump_with_heartbeats(settings, spec())
    assert Path(second.artifact_path).stat().st_size == second.size_bytes
    assert sorted(p.name for p in (settings.spool_dir / RUN_KEY).iterdir()) == sorted(
        [second.file_name, Path(second.manifest_path).name]
    )


async def test_cancelled_dump_kills_pg_dump_and_leaves_no_partial_file(settings: Settings) -> None:
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *_: env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await env.run(DumpActivities(settings).dump_schema, spec())
    leftovers = list((settings.spool_dir / RUN_KEY).iterdir())
    assert leftovers == []
    children = [p for p in psutil.Process().children(recursive=True) if "pg_dump" in p.name()]
    assert children == []


async def test_verify_accepts_the_dump_and_refuses_a_flipped_byte(settings: Settings) -> None:
    artifact, _ = await dump_with_heartbeats(settings, spec("acme"))
    verify = VerifyActivities(settings).verify_artifact
    await ActivityEnvironment().run(verify, artifact)

    path = Path(artifact.artifact_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(verify, artifact)
    assert caught.value.type == "ArtifactCorrupted" and caught.value.non_retryable

    path.unlink()
    with pytest.raises(ApplicationError, match="missing"):
        await ActivityEnvironment().run(verify, artifact)


async def test_verify_enforces_the_size_cap(settings: Settings) -> None:
    artifact, _ = await dump_with_heartbeats(settings, spec("acme"))
    small = settings.model_copy(update={"backup_max_bytes": artifact.size_bytes - 1})
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(VerifyActivities(small).verify_artifact, artifact)
    assert caught.value.type == "BackupTooLarge"


async def test_upload_is_idempotent_and_manifest_lands_beside(settings: Settings) -> None:
    artifact, _ = await dump_with_heartbeats(settings, spec("acme"))
    upload = UploadActivities(settings).upload_artifact
    key_stem = spec("acme").key_stem
    first = await ActivityEnvironment().run(upload, artifact, key_stem)
    second = await ActivityEnvironment().run(upload, artifact, key_stem)
    assert first.location == second.location
    stored = sorted(p.name for p in (settings.local_storage_dir / "backups" / "acme").iterdir())
    assert stored == [artifact.file_name, Path(artifact.manifest_path).name]
    assert (settings.local_storage_dir / key_stem).with_suffix(".dump.zst").read_bytes() == Path(
        artifact.artifact_path
    ).read_bytes()


async def test_cleanup_removes_spool_and_unfinished_uploads(settings: Settings) -> None:
    await dump_with_heartbeats(settings, spec("acme"))
    key_stem = spec("acme").key_stem
    unfinished = settings.local_storage_dir / f"{key_stem}.dump.zst.partial"
    unfinished.parent.mkdir(parents=True)
    unfinished.write_bytes(b"half an upload")
    cleanup = CleanupActivities(settings).cleanup_spool
    assert await ActivityEnvironment().run(cleanup, RUN_KEY, key_stem) is True
    assert not (settings.spool_dir / RUN_KEY).exists()
    assert not unfinished.exists()
    assert await ActivityEnvironment().run(cleanup, RUN_KEY, key_stem) is False


async def test_console_notification_is_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    note = Notification(
        event=BackupEvent.FAILED,
        project_id="acme",
        workflow_id="w",
        run_id="r",
        failed_step=Step.DUMPING,
        error="pg_dump exited with code 1",
    )
    outcomes = await ActivityEnvironment().run(NotifyActivities(settings).notify, note)
    assert [(o.channel, o.status) for o in outcomes] == [("console", "sent")]
    assert "Backup of acme FAILED during dumping: pg_dump exited with code 1" in caplog.text


async def test_upload_resumes_from_its_journal_after_a_crash(
    settings: Settings, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker dies during part 3: the next attempt continues the same multipart upload
    from the journal on the spool and sends only what is missing."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    s3_settings = settings.model_copy(
        update={
            "storage_backend": "s3",
            "s3_bucket": seaweed.bucket,
            "s3_endpoint_url": seaweed.endpoint_url,
            "s3_part_size_mib": 5,
            "s3_concurrency": 1,
            "s3_prefix": f"resume-{os.urandom(4).hex()}",
        }
    )
    artifact, _ = await dump_with_heartbeats(settings, spec("acme"))
    path = Path(artifact.artifact_path)
    path.write_bytes(os.urandom(12 * 1024 * 1024))  # 3 parts of 5 MiB at most
    manifest = Manifest.read(Path(artifact.manifest_path))
    manifest = manifest.model_copy(
        update={"size_bytes": path.stat().st_size, "sha256": sha256_of(path)}
    )
    manifest.write(Path(artifact.manifest_path))
    artifact = artifact.model_copy(
        update={"size_bytes": manifest.size_bytes, "sha256": manifest.sha256}
    )

    transfers: list[Transfer] = []

    class RecordedTransfer(Transfer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            transfers.append(self)

    real_hash = s3_module.S3Storage._hash_part

    def dies_at_part_3(
        self: s3_module.S3Storage, path: Path, number: int, part_size: int
    ) -> tuple[int, bytes, dict[str, str]]:
        if number == 3 and len(transfers) == 1:
            raise OSError("worker killed")
        return real_hash(self, path, number, part_size)

    monkeypatch.setattr(upload_module, "Transfer", RecordedTransfer)
    monkeypatch.setattr(s3_module.S3Storage, "_hash_part", dies_at_part_3)
    upload = UploadActivities(s3_settings).upload_artifact
    key_stem = spec("acme").key_stem
    with pytest.raises(OSError, match="worker killed"):
        await ActivityEnvironment().run(upload, artifact, key_stem)
    assert (path.parent / upload_module.JOURNAL).exists()

    stored = await ActivityEnvironment().run(upload, artifact, key_stem)

    first, second = (set(t.requests) for t in transfers)
    assert {"UploadPart(1)", "UploadPart(2)"} <= first
    assert "ListParts" in second and "CreateMultipartUpload" not in second
    assert {r for r in second if r.startswith("UploadPart")} == {"UploadPart(3)"}
    assert not (path.parent / upload_module.JOURNAL).exists()
    fetched = tmp_path / "fetched"
    await download(stored.location, fetched, s3_settings)
    assert fetched.read_bytes() == path.read_bytes()


async def test_upload_refuses_a_plaintext_artifact_when_encryption_is_configured(
    settings: Settings,
) -> None:
    """Defence in depth behind the dump: whatever happened before, plaintext never leaves."""
    artifact, _ = await dump_with_heartbeats(settings, spec("acme"))  # dumped without recipients
    encrypting = settings.model_copy(
        update={"encryption_recipients": str(pyrage.x25519.Identity.generate().to_public())}
    )
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            UploadActivities(encrypting).upload_artifact, artifact, spec("acme").key_stem
        )
    assert caught.value.type == "IntegrityError" and caught.value.non_retryable
    assert "not encrypted" in caught.value.message
    assert not settings.local_storage_dir.exists() or not any(
        settings.local_storage_dir.rglob("*.*")
    )


@pytest.mark.parametrize(
    ("columns", "outcome"),
    [
        ("id text PRIMARY KEY, status text", "acme"),  # no name, no schema_name: both optional
        ("id text PRIMARY KEY, state text", "lacks a column"),  # no status: say what is missing
    ],
)
async def test_validate_needs_only_id_and_status(
    scratch_db: str, columns: str, outcome: str
) -> None:
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA control_plane")
        conn.execute(f"CREATE TABLE control_plane.projects ({columns})")
        conn.execute("INSERT INTO control_plane.projects VALUES ('acme', 'ACTIVE')")
        conn.execute("CREATE SCHEMA acme")
    validate = ProjectActivities(Settings(database_url=scratch_db)).validate_project  # type: ignore[arg-type]
    if outcome == "acme":
        project = await ActivityEnvironment().run(validate, "acme")
        assert (project.name, project.schema_name) == ("acme", "acme")
        return
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(validate, "acme")
    assert caught.value.type == "ConfigurationError" and caught.value.non_retryable
    assert outcome in caught.value.message and "status" in caught.value.message
