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

from activities.support import SyncHeartbeat, count_bytes, step_errors
from backup.errors import ConfigurationError
from backup.files import atomic_file
from backup.models import DumpedArtifact, DumpFormat, DumpSpec
from backup.pgdump import pg_bin_dir
from backup.pipeline import PipelineOptions, dump_schema
from backup.settings import Settings
from backup.spool import UPLOAD_JOURNAL, remove_run, run_dir
from backup.storage import open_storage
from backup.storage.s3 import S3Storage
from backup.storage.s3_loop import parts_loop
from backup.storage.s3_stream import PartStreamer, abort_journaled


class DumpActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        try:  # the worker's loop, where S3 parts are sent from while dumping (s3_stream)
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @activity.defn(name="dump_schema")
    def dump_schema(self, spec: DumpSpec) -> DumpedArtifact:
        """Sync on purpose: it runs in the worker's thread pool, so reading pg_dump's output
        never blocks the event loop that delivers heartbeats and cancellation."""
        s = self._settings
        with step_errors("dump"):
            storage = _s3_storage(s)
            if storage:  # parts an earlier attempt sent belong to a dump that is redone now
                journal = s.spool_dir / spec.run_key / UPLOAD_JOURNAL
                abort_journaled(storage, journal, parts_loop(self._loop))
            # A retry starts from scratch: pg_dump can not resume, and stale files would mislead.
            remove_run(s.spool_dir, spec.run_key)
            with SyncHeartbeat("dumping") as heartbeat, dump_slot(s.max_concurrent_dumps):
                streamer = storage and PartStreamer(
                    storage,
                    spec.key_stem,
                    s.backup_max_bytes,
                    run_dir(s.spool_dir, spec.run_key) / UPLOAD_JOURNAL,
                    in_memory=s.spool_mode == "stream",
                    tick=lambda: heartbeat(heartbeat.progress.done),
                    loop=parts_loop(self._loop),
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
                    ),
                    on_progress=heartbeat,
                    recipients=s.recipients_for(spec.project.project_id),
                )
                if streamer:
                    streamer.finish(outcome.manifest.size_bytes, outcome.manifest.sha256)
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
def dump_slot(limit: int) -> Iterator[None]:
    """Hold one of MAX_CONCURRENT_DUMPS slots. The wait heartbeats, so a long queue of tenants
    is not taken for a dead worker, and a cancellation while waiting is honoured."""
    slots = _dump_slots(limit)
    waiting = SyncHeartbeat("waiting for a dump slot")
    while not slots.acquire(timeout=1.0):
        waiting(0)
    try:
        yield
    finally:
        slots.release()
