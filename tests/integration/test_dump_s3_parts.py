"""Upload while dumping, against the real SeaweedFS and PostgreSQL: the dump activity sends S3
multipart parts while pg_dump still runs, the object appears only when the upload step completes
the upload after verification, and nothing lingers after the size cap, a cancellation, a failed
part or a crashed attempt. Also SPOOL_MODE=stream (no spool file)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from pathlib import Path
from typing import Any

import pyrage
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.cleanup import CleanupActivities
from activities.dump import DumpActivities
from activities.upload import JOURNAL, UploadActivities
from activities.verify import VerifyActivities
from activities.verify_restore import VerifyRestoreActivities
from backup import compression, pg_process
from backup.download import download
from backup.errors import StorageError
from backup.models import Compression, DumpFormat, DumpSpec, Project
from backup.pgdump import pg_bin_dir
from backup.restore.check import check_by_restore
from backup.settings import Settings
from backup.storage import Transfer
from backup.storage import s3_stream as stream_module
from backup.storage.s3 import S3Storage
from devstack.postgres import PostgresServer
from devstack.seaweed import SeaweedS3
from tests.backends import s3_parts_settings
from tests.dumps import random_blobs_table

SCHEMA = "parts_big"
RUN_KEY = "run-parts"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def big_schema(postgres: PostgresServer) -> str:
    """~20 MiB of random bytes (incompressible): four 5 MiB parts and a last one."""
    random_blobs_table(postgres.url(), SCHEMA, 320)
    return SCHEMA


@pytest.fixture
def s3_settings(
    settings: Settings, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    return s3_parts_settings(settings, seaweed, monkeypatch, "parts", s3_concurrency=2)


@pytest.fixture
def slow_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    """0.08 s per MiB of pg_dump output (~2 s in all): time for parts to land meanwhile."""
    write = compression.Compressor.write

    def slow(self: compression.Compressor, data: bytes, /) -> int:
        time.sleep(0.08)
        return write(self, data)

    monkeypatch.setattr(compression.Compressor, "write", slow)


def spec(schema: str = SCHEMA) -> DumpSpec:
    return DumpSpec(
        project=Project(project_id=schema, name=schema, schema_name=schema),
        format=DumpFormat.CUSTOM,
        compression=Compression.ZSTD,
        run_key=RUN_KEY,
        key_stem=f"backups/{schema}/20261202T120000Z-feedbeef",
    )


def uploads(seaweed: SeaweedS3, settings: Settings) -> list[dict[str, Any]]:
    answer = seaweed.client().list_multipart_uploads(
        Bucket=seaweed.bucket, Prefix=settings.s3_prefix
    )
    return list(answer.get("Uploads", []))


def listed_parts(seaweed: SeaweedS3, upload: dict[str, Any]) -> list[int]:
    answer = seaweed.client().list_parts(
        Bucket=seaweed.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
    )
    return [p["PartNumber"] for p in answer.get("Parts", [])]


def visible(seaweed: SeaweedS3, settings: Settings) -> list[str]:
    answer = seaweed.client().list_objects_v2(Bucket=seaweed.bucket, Prefix=settings.s3_prefix)
    return [o["Key"] for o in answer.get("Contents", [])]


def upload_requests(monkeypatch: pytest.MonkeyPatch) -> list[Transfer]:
    import activities.upload as upload_module

    transfers: list[Transfer] = []

    class Recorded(Transfer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            transfers.append(self)

    monkeypatch.setattr(upload_module, "Transfer", Recorded)
    return transfers


def when_pg_dump_ends(monkeypatch: pytest.MonkeyPatch, look: Any) -> None:
    """Call `look()` the moment pg_dump's output is exhausted, before the pipeline finishes."""
    finish = pg_process.finish

    def looked(proc: Any) -> None:
        look()
        finish(proc)

    monkeypatch.setattr(pg_process, "finish", looked)


@pytest.mark.usefixtures("slow_dump")
async def test_parts_go_up_while_pg_dump_runs_and_the_object_appears_only_on_upload(
    s3_settings: Settings,
    big_schema: str,
    seaweed: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    seen: dict[str, Any] = {}

    def look() -> None:
        (upload,) = uploads(seaweed, s3_settings)
        seen["parts"] = listed_parts(seaweed, upload)
        seen["visible"] = visible(seaweed, s3_settings)

    when_pg_dump_ends(monkeypatch, look)
    dumped = await ActivityEnvironment().run(
        DumpActivities(s3_settings).dump_schema, spec(big_schema)
    )

    assert dumped.size_bytes > 4 * 5 * MIB
    assert seen["parts"], "parts must be in S3 before pg_dump has finished"
    assert seen["visible"] == []
    # The dump sent every part, the last one too, but completed nothing.
    (upload,) = uploads(seaweed, s3_settings)
    assert listed_parts(seaweed, upload) == [1, 2, 3, 4, 5]
    assert visible(seaweed, s3_settings) == []

    await ActivityEnvironment().run(VerifyActivities(s3_settings).verify_artifact, dumped)
    assert visible(seaweed, s3_settings) == []
    transfers = upload_requests(monkeypatch)
    stored = await ActivityEnvironment().run(
        UploadActivities(s3_settings).upload_artifact, dumped, spec(big_schema).key_stem
    )

    (transfer,) = transfers
    assert "CompleteMultipartUpload" in transfer.requests
    assert not any(r.startswith("UploadPart") for r in transfer.requests)
    assert uploads(seaweed, s3_settings) == []
    fetched = tmp_path / "fetched"
    await download(stored.location, fetched, s3_settings)
    assert fetched.read_bytes() == Path(dumped.artifact_path).read_bytes()


@pytest.mark.usefixtures("slow_dump")
async def test_the_size_cap_stops_the_dump_and_aborts_its_upload(
    s3_settings: Settings, big_schema: str, seaweed: SeaweedS3
) -> None:
    capped = s3_settings.model_copy(update={"backup_max_bytes": 12 * MIB})
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(DumpActivities(capped).dump_schema, spec(big_schema))
    assert caught.value.type == "BackupTooLarge"
    assert uploads(seaweed, capped) == [] and visible(seaweed, capped) == []
    assert list((capped.spool_dir / RUN_KEY).iterdir()) == []


@pytest.mark.usefixtures("slow_dump")
async def test_a_cancelled_dump_leaves_no_upload(
    s3_settings: Settings, big_schema: str, seaweed: SeaweedS3
) -> None:
    env = ActivityEnvironment()
    stop = threading.Event()
    loop = asyncio.get_running_loop()

    def cancel_once_a_part_is_stored() -> None:
        while not stop.is_set():
            found = uploads(seaweed, s3_settings)
            if found and listed_parts(seaweed, found[0]):
                loop.call_soon_threadsafe(env.cancel)  # the activity's task is on `loop`
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=cancel_once_a_part_is_stored)
    watcher.start()
    try:
        with pytest.raises(asyncio.CancelledError):
            await env.run(DumpActivities(s3_settings).dump_schema, spec(big_schema))
    finally:
        stop.set()
        watcher.join()
    assert uploads(seaweed, s3_settings) == [] and visible(seaweed, s3_settings) == []
    assert list((s3_settings.spool_dir / RUN_KEY).iterdir()) == []


async def die_mid_dump(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed mid-dump runs no cleanup: its journal and upload stay."""
    dying: list[stream_module.PartStreamer] = []
    with monkeypatch.context() as crash:
        crash.setattr(stream_module.PartStreamer, "abort", lambda self: dying.append(self))

        def killed(proc: Any) -> None:
            proc.kill()
            raise OSError("worker killed")

        crash.setattr(pg_process, "finish", killed)
        with pytest.raises(OSError, match="worker killed"):
            await ActivityEnvironment().run(DumpActivities(settings).dump_schema, spec())
    # The parts on their way when it died land first (on this loop, so never wait on it
    # blocking): a journal write still in flight would race the next step's spool removal.
    for streamer in dying:
        await asyncio.to_thread(concurrent.futures.wait, streamer._futures, 10)
    assert dying and (settings.spool_dir / RUN_KEY / JOURNAL).exists()


async def test_a_retried_dump_aborts_the_upload_of_the_attempt_that_died(
    s3_settings: Settings, big_schema: str, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next attempt aborts the dead one's upload before dumping again: only its own stays."""
    await die_mid_dump(s3_settings, monkeypatch)
    (dead,) = uploads(seaweed, s3_settings)

    dumped = await ActivityEnvironment().run(
        DumpActivities(s3_settings).dump_schema, spec(big_schema)
    )

    (fresh,) = uploads(seaweed, s3_settings)
    assert fresh["UploadId"] != dead["UploadId"]
    assert dumped.size_bytes > 5 * MIB


async def test_cleanup_aborts_the_upload_of_a_dump_that_died(
    s3_settings: Settings, big_schema: str, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    await die_mid_dump(s3_settings, monkeypatch)
    assert len(uploads(seaweed, s3_settings)) == 1
    cleanup = CleanupActivities(s3_settings).cleanup_spool
    assert await ActivityEnvironment().run(cleanup, RUN_KEY, spec(big_schema).key_stem)
    assert uploads(seaweed, s3_settings) == [] and visible(seaweed, s3_settings) == []


@pytest.mark.usefixtures("slow_dump")
async def test_an_upload_step_that_dies_before_completing_resumes_from_the_journal(
    s3_settings: Settings,
    big_schema: str,
    seaweed: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    dumped = await ActivityEnvironment().run(
        DumpActivities(s3_settings).dump_schema, spec(big_schema)
    )
    await ActivityEnvironment().run(VerifyActivities(s3_settings).verify_artifact, dumped)
    transfers = upload_requests(monkeypatch)
    upload = UploadActivities(s3_settings).upload_artifact
    with monkeypatch.context() as crash:

        async def dies(*_: Any) -> None:
            raise OSError("worker killed")

        crash.setattr(S3Storage, "_complete", dies)
        with pytest.raises(OSError, match="worker killed"):
            await ActivityEnvironment().run(upload, dumped, spec(big_schema).key_stem)
    assert visible(seaweed, s3_settings) == []

    stored = await ActivityEnvironment().run(upload, dumped, spec(big_schema).key_stem)

    retry = transfers[-1].requests
    assert "ListParts" in retry and "CompleteMultipartUpload" in retry
    assert not any(r.startswith(("UploadPart", "CreateMultipartUpload")) for r in retry)
    fetched = tmp_path / "fetched"
    await download(stored.location, fetched, s3_settings)
    assert fetched.read_bytes() == Path(dumped.artifact_path).read_bytes()


async def test_a_corrupted_spool_file_is_refused_before_the_upload_is_completed(
    s3_settings: Settings, big_schema: str, seaweed: SeaweedS3
) -> None:
    dumped = await ActivityEnvironment().run(
        DumpActivities(s3_settings).dump_schema, spec(big_schema)
    )
    path = Path(dumped.artifact_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(VerifyActivities(s3_settings).verify_artifact, dumped)
    assert caught.value.type == "ArtifactCorrupted"
    assert visible(seaweed, s3_settings) == []


@pytest.fixture
def streaming(s3_settings: Settings) -> Settings:
    return s3_settings.model_copy(update={"spool_mode": "stream"})


async def test_stream_mode_keeps_no_spool_file_and_restores(
    streaming: Settings,
    big_schema: str,
    seaweed: SeaweedS3,
    postgres: PostgresServer,
    scratch_db: str,
    tmp_path: Path,
) -> None:
    dumped = await ActivityEnvironment().run(
        DumpActivities(streaming).dump_schema, spec(big_schema)
    )
    assert not Path(dumped.artifact_path).exists()
    spooled = sorted(p.name for p in (streaming.spool_dir / RUN_KEY).iterdir())
    assert spooled == sorted([Path(dumped.manifest_path).name, JOURNAL])
    assert visible(seaweed, streaming) == []

    await ActivityEnvironment().run(VerifyActivities(streaming).verify_artifact, dumped)
    stored = await ActivityEnvironment().run(
        UploadActivities(streaming).upload_artifact, dumped, spec(big_schema).key_stem
    )
    fetched = tmp_path / "fetched.dump.zst"
    manifest = await download(stored.location, fetched, streaming)  # checks the SHA-256
    assert manifest.size_bytes == dumped.size_bytes == fetched.stat().st_size
    check = check_by_restore(
        fetched, manifest, postgres.url(), f"verify_{os.urandom(4).hex()}", pg_bin_dir()
    )
    assert check.verified, check.describe()


async def test_stream_mode_spools_an_artifact_of_one_part(
    streaming: Settings, seaweed: SeaweedS3
) -> None:
    dumped = await ActivityEnvironment().run(DumpActivities(streaming).dump_schema, spec("acme"))
    assert Path(dumped.artifact_path).stat().st_size == dumped.size_bytes < 5 * MIB
    assert uploads(seaweed, streaming) == []
    await ActivityEnvironment().run(VerifyActivities(streaming).verify_artifact, dumped)


async def test_stream_mode_refuses_a_test_restore_clearly(
    streaming: Settings, big_schema: str, seaweed: SeaweedS3
) -> None:
    dumped = await ActivityEnvironment().run(
        DumpActivities(streaming).dump_schema, spec(big_schema)
    )
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            VerifyRestoreActivities(streaming).verify_restore, dumped, RUN_KEY
        )
    assert caught.value.type == "ConfigurationError" and caught.value.non_retryable
    assert (
        "SPOOL_MODE=stream" in caught.value.message and "SPOOL_MODE=spool" in caught.value.message
    )


def fail_part(monkeypatch: pytest.MonkeyPatch, failing: int) -> None:
    """S3 answers part `failing` with an error (every attempt)."""
    send = S3Storage._send_part

    async def fails(
        self: S3Storage, s3: Any, key: str, upload: Any, number: int, *args: Any
    ) -> Any:
        if number == failing:
            raise StorageError("S3 500 from the test")
        return await send(self, s3, key, upload, number, *args)

    monkeypatch.setattr(S3Storage, "_send_part", fails)


async def test_stream_mode_fails_the_dump_on_a_failed_part_and_leaves_nothing(
    streaming: Settings, big_schema: str, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_part(monkeypatch, 3)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(DumpActivities(streaming).dump_schema, spec(big_schema))
    assert caught.value.type == "StorageError" and not caught.value.non_retryable
    assert uploads(seaweed, streaming) == [] and visible(seaweed, streaming) == []
    assert list((streaming.spool_dir / RUN_KEY).iterdir()) == []


async def test_spool_mode_falls_back_to_the_upload_step_when_a_part_fails(
    s3_settings: Settings,
    big_schema: str,
    seaweed: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The spool holds the artifact anyway: a part that fails while dumping only costs the head
    start (the upload step sends everything as before), never the dump."""
    with monkeypatch.context() as failing:
        fail_part(failing, 2)
        dumped = await ActivityEnvironment().run(
            DumpActivities(s3_settings).dump_schema, spec(big_schema)
        )
    assert Path(dumped.artifact_path).stat().st_size == dumped.size_bytes
    assert not (s3_settings.spool_dir / RUN_KEY / JOURNAL).exists()
    assert uploads(seaweed, s3_settings) == []
    await ActivityEnvironment().run(VerifyActivities(s3_settings).verify_artifact, dumped)
    stored = await ActivityEnvironment().run(
        UploadActivities(s3_settings).upload_artifact, dumped, spec(big_schema).key_stem
    )
    fetched = tmp_path / "fetched"
    await download(stored.location, fetched, s3_settings)
    assert fetched.read_bytes() == Path(dumped.artifact_path).read_bytes()


async def test_stream_mode_with_age_encryption_and_slow_parts(
    streaming: Settings,
    big_schema: str,
    seaweed: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """With age, pyrage's thread writes the parts: when every buffer is in flight it waits for
    one outside the activity's thread (a heartbeat there failed the dump)."""
    identity = pyrage.x25519.Identity.generate()
    encrypting = streaming.model_copy(update={"encryption_recipients": str(identity.to_public())})
    send = S3Storage._send_part
    loops: list[asyncio.AbstractEventLoop] = []

    async def slow(self: S3Storage, *args: Any) -> Any:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.3)
        return await send(self, *args)

    monkeypatch.setattr(S3Storage, "_send_part", slow)
    dumped = await ActivityEnvironment().run(
        DumpActivities(encrypting).dump_schema, spec(big_schema)
    )
    assert not Path(dumped.artifact_path).exists() and dumped.file_name.endswith(".age")
    # Sent from the activity's own event loop (its shared S3 client) while the dump's thread ran.
    assert len(loops) > 1 and set(loops) == {asyncio.get_running_loop()}
    await ActivityEnvironment().run(VerifyActivities(encrypting).verify_artifact, dumped)
    stored = await ActivityEnvironment().run(
        UploadActivities(encrypting).upload_artifact, dumped, spec(big_schema).key_stem
    )
    fetched = tmp_path / "fetched.age"
    await download(stored.location, fetched, encrypting)
    assert fetched.stat().st_size == dumped.size_bytes
    plain = pyrage.decrypt(fetched.read_bytes(), [identity])
    assert plain[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame


async def test_stream_mode_sends_a_directory_dump_as_it_is_tarred(
    streaming: Settings,
    big_schema: str,
    seaweed: SeaweedS3,
    postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    """pg_dump -Fd still stages its files on the spool; the tar of them goes out in parts."""
    directory = spec(big_schema).model_copy(update={"format": DumpFormat.DIRECTORY})
    dumped = await ActivityEnvironment().run(DumpActivities(streaming).dump_schema, directory)
    assert not Path(dumped.artifact_path).exists() and dumped.size_bytes > 5 * MIB
    await ActivityEnvironment().run(VerifyActivities(streaming).verify_artifact, dumped)
    stored = await ActivityEnvironment().run(
        UploadActivities(streaming).upload_artifact, dumped, directory.key_stem
    )
    fetched = tmp_path / "fetched.dir.tar"
    manifest = await download(stored.location, fetched, streaming)
    check = check_by_restore(
        fetched, manifest, postgres.url(), f"verify_{os.urandom(4).hex()}", pg_bin_dir()
    )
    assert check.verified, check.describe()
