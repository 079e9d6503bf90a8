"""The dump pipeline: pg_dump → compress → count and hash → spool file, in one pass.

Synchronous by design: it runs in a worker thread, so blocking reads never stall the event
loop that sends heartbeats. `on_progress` is called with pg_dump's byte count as it grows and
may raise to abort (cancellation); on any failure the partial file is removed.

The directory format is the exception to "one pass": pg_dump -Fd -j writes files, so it dumps
into a staging directory on the spool, compressing each file itself, and the directory is then
streamed into the artifact as a tar (no second compression: the files already are).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import psycopg

from backup import large_objects, pg_process, row_counts
from backup.catalog import exact_row_counts, parallel_scans_again, snapshot_facts
from backup.compression import CappedHashingWriter, Compressor, too_large
from backup.dependencies import capture as capture_dependencies
from backup.encryption import AgeEncryptor, parse_recipients
from backup.errors import DumpFailed, SchemaNotFound
from backup.files import atomic_file
from backup.layout import artifact_name
from backup.manifest import Manifest, manifest_name
from backup.models import Compression, DumpFormat, Project
from backup.pgconn import ClientConnection, client_connection, read_only_transaction
from backup.pgdump import directory_compression, pg_dump_args, pg_dump_version, skipped_scans
from backup.pipe_reader import BatchedPipe
from backup.spool import ensure_free_space, out_of_space_is_spool_full, spool_bytes_needed

CHUNK = 1024 * 1024

ProgressCallback = Callable[[int], None]
# How often the directory format's staging directory is measured against the cap.
WATCH_SECONDS = 0.1


@dataclass(frozen=True)
class PipelineOptions:
    bin_dir: Path
    max_bytes: int
    zstd_level: int = 1
    zstd_threads: int = 0
    gzip_level: int = 6
    jobs: int = 2
    # Free space to leave on the spool disk beyond the dump's estimate (SPOOL_MIN_FREE_BYTES).
    min_free_bytes: int = 0
    # ROW_COUNTS=stream: count rows in the dump's COPY data on the worker instead of count(*)
    # on the database (docs/performance.md: less database CPU, more worker CPU).
    rows_from_stream: bool = False
    # Where the artifact is written: the spool file, or a part streamer's (s3_stream) view of
    # it that sends S3 parts while it grows; `spooled_max` bounds what lands on the spool.
    output: Callable[[Path], AbstractContextManager[BinaryIO]] = atomic_file
    spooled_max: int | None = None
    # Held while the database is worked (snapshot, catalog, pg_dump, counts): a dump slot
    # (MAX_CONCURRENT_DUMPS), given back before the manifest is written.
    slot: Callable[[], AbstractContextManager[object]] = nullcontext


@dataclass(frozen=True)
class DumpOutcome:
    artifact_path: Path
    manifest_path: Path
    manifest: Manifest


def dump_schema(
    *,
    database_url: str,
    project: Project,
    fmt: DumpFormat,
    compression: Compression,
    out_dir: Path,
    base_name: str,
    options: PipelineOptions,
    on_progress: ProgressCallback = lambda _: None,
    recipients: list[str] | None = None,
) -> DumpOutcome:
    """Dump one schema into `out_dir`; with age `recipients` (public keys) the artifact is
    encrypted in the same pass, and a bad key stops everything before pg_dump starts."""
    age_recipients = parse_recipients(recipients) if recipients else None
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    schema = project.schema_name
    pg_compress = "0"
    if fmt is DumpFormat.DIRECTORY:
        # What the manifest records is what the artifact holds: pg_dump's compression of its
        # files, gzip when zstd is asked for and this pg_dump has no zstd.
        compression, pg_compress = directory_compression(
            options.bin_dir,
            compression,
            zstd_level=options.zstd_level,
            gzip_level=options.gzip_level,
        )
    artifact = out_dir / artifact_name(base_name, fmt, compression, encrypted=bool(recipients))
    spool_root = out_dir.parent  # out_dir is SPOOL_DIR/<run key>
    # One repeatable-read transaction exports its snapshot to pg_dump; the rows are counted in
    # the dump's own COPY data as it streams by (row_counts), and what that can not read is
    # counted with count(*) in the same snapshot: exactly what the dump holds either way.
    stream = row_counts.stream_counter(fmt, schema) if options.rows_from_stream else None
    with options.slot(), read_only_transaction(database_url) as conn:
        facts = snapshot_facts(conn, schema)
        if facts.namespace is None:
            raise SchemaNotFound(
                f"schema {schema!r} of project {project.project_id!r} does not exist in the "
                "database; fix control_plane.projects.schema_name or create the schema"
            )
        snapshot, tables, server = facts.snapshot, facts.tables, facts.server_version
        flags = skipped_scans(facts)
        needed = spool_bytes_needed(
            facts.data_bytes,
            compressed=compression is not Compression.NONE,
            staged=False,
            max_bytes=min(options.max_bytes, options.spooled_max or options.max_bytes),
        )
        if fmt is DumpFormat.DIRECTORY:
            # The staging directory is compressed and capped like the artifact, and at worst
            # (one table holding everything) both are whole on the spool at the end.
            needed *= 2
        ensure_free_space(spool_root, needed, options.min_free_bytes)
        # What the schema needs from outside itself, and its large objects, in the same snapshot.
        dependencies = capture_dependencies(
            conn, schema, database_url, snapshot, options.bin_dir, facts.namespace
        )
        append = large_objects.Appender(
            database_url, snapshot, large_objects.describe(conn, schema)
        )
        parallel_scans_again(conn)  # the catalog is read: count(*) may scan in parallel
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="row-count") as counter,
            out_of_space_is_spool_full(spool_root),
        ):
            # The formats the worker does not see whole (directory, tar): count(*) beside the dump.
            counting = counter.submit(exact_row_counts, conn, schema, [] if stream else tables)
            try:
                sink, compressor = _run_dump(
                    database_url,
                    schema,
                    fmt,
                    compression,
                    pg_compress,
                    options,
                    out_dir,
                    artifact,
                    on_progress,
                    age_recipients,
                    snapshot,
                    append,
                    stream,
                    flags,
                )
            except BaseException:
                _cancel_counting(conn, counting)
                raise
            counts = counting.result()
        if stream is not None:  # and what the stream did not show, in the same snapshot
            counts = stream.counts()
            counts.update(exact_row_counts(conn, schema, [t for t in tables if t not in counts]))
        dependencies.large_objects = append.result

    manifest = Manifest(
        project_id=project.project_id,
        project_name=project.name,
        schema_name=schema,
        format=fmt,
        compression=compression,
        artifact=artifact.name,
        size_bytes=sink.bytes_written,
        raw_bytes=compressor.raw_bytes,
        sha256=sink.sha256,
        encryption="age-x25519" if recipients else None,
        recipients=list(recipients or []),
        tables=tables,
        table_count=len(tables),
        row_counts={table: counts[table] for table in tables},
        pg_dump_version=pg_dump_version(options.bin_dir),
        server_version=server,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        dump_seconds=round(time.monotonic() - clock, 3),
        dependencies=dependencies,
    )
    manifest_path = out_dir / manifest_name(artifact.name)
    with out_of_space_is_spool_full(spool_root):
        manifest.write(manifest_path)
    return DumpOutcome(artifact, manifest_path, manifest)


def _cancel_counting(conn: psycopg.Connection, counting: Future[dict[str, int]]) -> None:
    """An aborted dump must not wait for its row counts (a big schema counts for minutes):
    cancel the running count(*) on the server. A cancel that lands between two tables' queries
    cancels nothing, so repeat until the counting thread has given up."""
    while not counting.done():
        try:
            conn.cancel_safe(timeout=5)
        except psycopg.Error:
            return  # the server is out of reach: the count fails on its own; keep the cause
        wait_for([counting], timeout=0.1)


def _run_dump(
    database_url: str,
    schema: str,
    fmt: DumpFormat,
    compression: Compression,
    pg_compress: str,
    options: PipelineOptions,
    out_dir: Path,
    artifact: Path,
    on_progress: ProgressCallback,
    age_recipients: list[object] | None,
    snapshot: str,
    append: Callable[[Compressor], object] = lambda _: None,
    stream: row_counts.StreamCounter | None = None,
    flags: Sequence[str] = (),
) -> tuple[CappedHashingWriter, Compressor]:
    """pg_dump → compress → encrypt → hash and count → artifact, written atomically."""
    with client_connection(database_url) as client, options.output(artifact) as file:
        sink = CappedHashingWriter(file, options.max_bytes)
        # dump → compress → encrypt → hash and count → file
        encryptor = AgeEncryptor(sink, age_recipients) if age_recipients else None
        try:
            with Compressor(
                encryptor or sink,
                Compression.NONE if fmt is DumpFormat.DIRECTORY else compression,
                zstd_level=options.zstd_level,
                zstd_threads=options.zstd_threads,
                gzip_level=options.gzip_level,
            ) as compressor:
                if fmt is DumpFormat.DIRECTORY:
                    _dump_directory(
                        client,
                        schema,
                        pg_compress,
                        options,
                        out_dir,
                        compressor,
                        on_progress,
                        snapshot,
                        flags,
                    )
                else:
                    _dump_stream(
                        client,
                        schema,
                        fmt,
                        options,
                        compressor,
                        on_progress,
                        snapshot,
                        stream,
                        flags,
                    )
                append(compressor)  # after pg_dump's output, in the same stream
        except BaseException:
            if encryptor:
                encryptor.abort()
            raise
        if encryptor:
            encryptor.close()

    return sink, compressor


def _dump_stream(
    client: ClientConnection,
    schema: str,
    fmt: DumpFormat,
    options: PipelineOptions,
    compressor: Compressor,
    on_progress: ProgressCallback,
    snapshot: str | None = None,
    stream: row_counts.StreamCounter | None = None,
    flags: Sequence[str] = (),
) -> None:
    args = pg_dump_args(
        options.bin_dir,
        conninfo=client.conninfo,
        schema=schema,
        fmt=fmt,
        snapshot=snapshot,
        flags=flags,
    )
    proc = pg_process.start(client, args, subprocess.PIPE)
    assert proc.stdout is not None
    output = BatchedPipe(proc.stdout, CHUNK)
    try:
        while chunk := output.read():
            compressor.write(chunk)
            if stream is not None:
                stream.feed(chunk)
            on_progress(compressor.raw_bytes)
        pg_process.finish(proc)
    finally:
        pg_process.stop(proc)


def _dump_directory(
    client: ClientConnection,
    schema: str,
    pg_compress: str,
    options: PipelineOptions,
    out_dir: Path,
    compressor: Compressor,
    on_progress: ProgressCallback,
    snapshot: str | None = None,
    flags: Sequence[str] = (),
) -> None:
    """Parallel dump (-Fd -j) to a staging directory, then streamed into the artifact as tar.

    pg_dump compresses the files itself (`pg_compress`), and the directory is watched while it
    runs: past BACKUP_MAX_BYTES pg_dump is killed and the dump fails like the other formats do,
    instead of filling the spool. The directory is removed on every way out."""
    dump_dir = out_dir / "directory.partial"
    shutil.rmtree(dump_dir, ignore_errors=True)
    args = pg_dump_args(
        options.bin_dir,
        conninfo=client.conninfo,
        schema=schema,
        fmt=DumpFormat.DIRECTORY,
        output_dir=dump_dir,
        jobs=options.jobs,
        snapshot=snapshot,
        compress=pg_compress,
        flags=flags,
    )
    proc = pg_process.start(client, args, None)
    try:
        while not pg_process.exited_within(proc, WATCH_SECONDS):
            size = _tree_size(dump_dir)
            if size > options.max_bytes:
                raise too_large(options.max_bytes)
            on_progress(size)
        try:
            pg_process.finish(proc)
        except DumpFailed as failed:
            _raise_if_out_of_space(str(failed), dump_dir)
            raise
        with tarfile.open(fileobj=compressor, mode="w|") as tar:  # type: ignore[call-overload]
            tar.add(dump_dir, arcname="dump", recursive=False)
            # Each file leaves the spool once it is in the artifact, so the staging directory
            # and the artifact together stay near the artifact's size.
            for member in sorted(dump_dir.iterdir()):
                tar.add(member, arcname=f"dump/{member.name}")
                member.unlink()
        on_progress(compressor.raw_bytes)
    finally:
        pg_process.stop(proc)
        shutil.rmtree(dump_dir, ignore_errors=True)


def _raise_if_out_of_space(failure: str, dump_dir: Path) -> None:
    """pg_dump -Fd writes its files itself, so a full spool reaches us only as its exit code:
    make it the ENOSPC the other formats raise (then SpoolFull, not retried). Its message may
    be localized, so a disk left with less than a chunk free counts too; measured before the
    staging directory is removed and gives the space back."""
    free = shutil.disk_usage(dump_dir.parent).free
    if os.strerror(errno.ENOSPC) in failure or free < CHUNK:
        written = _tree_size(dump_dir)
        raise OSError(
            errno.ENOSPC,
            f"pg_dump: {os.strerror(errno.ENOSPC)} after writing {written} bytes of the "
            f"directory dump, {free} bytes free then",
        )


def _tree_size(path: Path) -> int:
    """Bytes pg_dump has written so far (-Fd writes flat: toc.dat and one file per table)."""
    try:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    except FileNotFoundError:  # not created yet
        return 0
