"""Dump the tenant schema into this host's spool, heartbeating bytes as they flow; to S3, its
multipart parts go up as the artifact grows (backup.storage.s3_stream)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from temporalio import activity

from activities.support import Blocking, ByteProgress, count_bytes, step_errors
from backup.errors import ConfigurationError
from backup.files import atomic_file
from backup.models import DumpedArtifact, DumpFormat, DumpSpec
from backup.pgdump import pg_bin_dir
from backup.pipeline import DumpOutcome, PipelineOptions, dump_schema
from backup.settings import Settings
from backup.spool import UPLOAD_JOURNAL, remove_run, run_dir
from backup.storage import open_storage
from backup.storage.s3 import S3Storage
from backup.storage.s3_stream import PartStreamer, abort_journaled


class DumpActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="dump_schema")
    async def dump_schema(self, spec: DumpSpec) -> DumpedArtifact:
        """The dump runs in a thread of its own (`Blocking`) while this activity's event loop
        heartbeats its bytes and sends its S3 parts; a cancellation stops pg_dump, and the
        activity returns only once the thread has cleaned up."""
        s = self._settings
        # Parts go out from this loop: its shared S3 client serves the upload step too (a second
        # client cost 16 MB of RSS). The dump's thread hands them over and waits for them,
        # while this loop, free during the dump, sends them and heartbeats.
        loop = asyncio.get_running_loop()
        with step_errors("dump"):
            async with Blocking("dumping") as blocking:
                outcome = await blocking.run(lambda _: self._dump(spec, loop, blocking.progress))
        m = outcome.manifest
        count_bytes("export_backup_bytes_dumped", m.raw_bytes)
        return DumpedArtifact(
            host_queue=s.host_task_queue,
            artifact_path=str(outcome.artifact_path),
            manifest_path=str(outcome.manifest_path),
            file_name=outcome.artifact_path.name,
            size_bytes=m.size_bytes,
            raw_bytes=m.raw_bytes,
            sha256=m.sha256,
            table_count=m.table_count,
            dump_seconds=m.dump_seconds,
            compression=m.compression,
            dependencies=m.dependencies.summary() if m.dependencies else None,
        )

    def _dump(
        self, spec: DumpSpec, loop: asyncio.AbstractEventLoop, progress: ByteProgress
    ) -> DumpOutcome:
        """In the dump's thread, never on `loop`: the S3 calls below wait for it. Every
        `progress.update` raises once the activity is cancelled, which stops pg_dump."""
        s = self._settings
        storage = _s3_storage(s)
        if storage:  # parts an earlier attempt sent belong to a dump that is redone now
            abort_journaled(storage, s.spool_dir / spec.run_key / UPLOAD_JOURNAL, loop)
        # A retry starts from scratch: pg_dump can not resume, and stale files would mislead.
        remove_run(s.spool_dir, spec.run_key)
        streamer = storage and PartStreamer(
            storage,
            spec.key_stem,
            s.backup_max_bytes,
            run_dir(s.spool_dir, spec.run_key) / UPLOAD_JOURNAL,
            in_memory=s.spool_mode == "stream",
            tick=lambda: progress.update(progress.done),
            loop=loop,
        )
        # Stream mode spools at most one part (what a single PutObject sends); the
        # directory format stages pg_dump's files on the spool whatever the mode.
        small = streamer and streamer.in_memory and spec.format is not DumpFormat.DIRECTORY
        outcome = dump_schema(
            database_url=s.database_url.get_secret_value(),
            project=spec.project,
            fmt=spec.format,
            compression=spec.compression,
            out_dir=run_dir(s.spool_dir, spec.run_key),
            base_name=PurePosixPath(spec.key_stem).name,
            options=PipelineOptions(
                bin_dir=pg_bin_dir(s.pg_bin_dir),
                max_bytes=s.backup_max_bytes,
                zstd_level=s.zstd_level,
                zstd_threads=s.zstd_threads,
                gzip_level=s.gzip_level,
                jobs=s.dump_jobs,
                min_free_bytes=s.spool_min_free_bytes,
                rows_from_stream=s.row_counts == "stream",
                output=streamer.output if streamer else atomic_file,
                spooled_max=streamer.part_size if small and streamer else None,
                slot=lambda: dump_slot(s.max_concurrent_dumps, progress),
            ),
            on_progress=progress.update,
            recipients=s.recipients_for(spec.project.project_id),
        )
        if streamer:
            streamer.finish(outcome.manifest.size_bytes, outcome.manifest.sha256)
        return outcome


def _s3_storage(settings: Settings) -> S3Storage | None:
    """The S3 store parts go to while dumping, or None (other backends; S3 with
    S3_UPLOAD_WHILE_DUMPING=false in SPOOL_MODE=spool)."""
    if settings.storage_backend != "s3":
        if settings.spool_mode == "stream":
            raise ConfigurationError(
                f"SPOOL_MODE=stream sends the dump straight to S3, but STORAGE_BACKEND is "
                f"{settings.storage_backend!r}: use STORAGE_BACKEND=s3 or SPOOL_MODE=spool"
            )
        return None
    if settings.spool_mode == "spool" and not settings.s3_upload_while_dumping:
        return None
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    return storage


@functools.cache
def _dump_slots(limit: int) -> threading.BoundedSemaphore:
    """One pool of pg_dump slots per worker process, shared by all its dump activities."""
    return threading.BoundedSemaphore(limit)


@contextmanager
def dump_slot(limit: int, progress: ByteProgress) -> Iterator[None]:
    """Hold one of MAX_CONCURRENT_DUMPS slots (in the dump's thread). While it waits, the
    activity heartbeats "waiting for a dump slot", so a long queue of tenants is not taken for
    a dead worker, and a cancellation while waiting is honoured."""
    slots = _dump_slots(limit)
    if not slots.acquire(blocking=False):
        step, progress.step = progress.step, "waiting for a dump slot"
        try:
            while not slots.acquire(timeout=1.0):
                progress.update(progress.done)  # raises once the activity is cancelled
        finally:
            progress.step = step
    try:
        yield
    finally:
        slots.release()
