"""The spool's free-space guard: a dump that can not fit fails before pg_dump starts, and a disk
that fills up mid-write fails the same way, non-retryable, leaving no partial file."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import backup.spool as spool_module
from activities.dump import DumpActivities
from backup import pipeline
from backup.compression import CappedHashingWriter
from backup.errors import SpoolFull
from backup.models import Compression, DumpFormat, DumpSpec, Project
from backup.settings import Settings
from backup.spool import ensure_free_space, spool_bytes_needed
from devstack.postgres import PostgresServer

RUN_KEY = "run-spool"


def spec(
    fmt: DumpFormat = DumpFormat.CUSTOM,
    compression: Compression = Compression.ZSTD,
    schema: str = "umbrella",
) -> DumpSpec:
    return DumpSpec(
        project=Project(project_id=schema, name=schema, schema_name=schema),
        format=fmt,
        compression=compression,
        run_key=RUN_KEY,
        key_stem="backups/umbrella/20261126T120000Z-abcdef12",
    )


def test_bytes_needed_follow_compression_staging_and_the_cap() -> None:
    assert spool_bytes_needed(1000, compressed=False, staged=False, max_bytes=10**9) == 1000
    assert spool_bytes_needed(1000, compressed=True, staged=False, max_bytes=10**9) == 500
    assert spool_bytes_needed(1000, compressed=True, staged=True, max_bytes=10**9) == 1500
    assert spool_bytes_needed(1000, compressed=False, staged=False, max_bytes=300) == 300


def test_the_message_names_spool_dir_needed_free_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        spool_module.shutil,
        "disk_usage",
        lambda _: shutil._ntuple_diskusage(10**6, 0, 1000),  # type: ignore[attr-defined]
    )
    ensure_free_space(tmp_path, 800, 200)  # exactly enough
    with pytest.raises(SpoolFull) as caught:
        ensure_free_space(tmp_path, 900, 200)
    message = str(caught.value)
    assert f"SPOOL_DIR {tmp_path}" in message
    assert "about 900 bytes" in message and "SPOOL_MIN_FREE_BYTES=200" in message
    assert "1000 bytes are free" in message and "larger disk" in message


async def test_a_dump_that_can_not_fit_fails_before_pg_dump_and_is_not_retried(
    settings: Settings,
) -> None:
    free = shutil.disk_usage(settings.spool_dir.parent).free
    tight = settings.model_copy(update={"spool_min_free_bytes": free})
    dump = DumpActivities(tight).dump_schema
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(dump, spec())
    assert caught.value.type == "SpoolFull" and caught.value.non_retryable
    assert f"SPOOL_DIR {settings.spool_dir}" in caught.value.message
    assert not list((settings.spool_dir / RUN_KEY).iterdir())


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.ZSTD])
async def test_a_disk_full_mid_write_leaves_no_partial_file(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, compression: Compression
) -> None:
    real_write = CappedHashingWriter.write

    def fill_up(self: CappedHashingWriter, data: bytes, /) -> Any:
        if self.bytes_written > 64 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(CappedHashingWriter, "write", fill_up)
    dump = DumpActivities(settings).dump_schema
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(dump, spec(DumpFormat.SQL, compression))
    assert caught.value.type == "SpoolFull" and caught.value.non_retryable
    assert "ran out of space" in caught.value.message
    assert not list((settings.spool_dir / RUN_KEY).iterdir())


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `path`, so the disk pg_dump writes to really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the tests as root)")
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def squeezed(postgres: PostgresServer) -> Iterator[str]:
    """About 50 KB on disk (TOAST compresses the repeated text) but about 6 MB dumped: the
    estimate lets the dump start and the disk fills while pg_dump writes its files."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS squeezed CASCADE; CREATE SCHEMA squeezed")
        conn.execute("CREATE TABLE squeezed.t (id int, body text)")
        conn.execute(
            "INSERT INTO squeezed.t SELECT g, repeat(md5(g::text), 1000) "
            "FROM generate_series(1, 200) g"
        )
    yield "squeezed"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS squeezed CASCADE")


async def test_a_disk_full_inside_pg_dump_is_spool_full_too(
    settings: Settings, tmp_path: Path, squeezed: str
) -> None:
    """With the directory format pg_dump writes the files itself, so the ENOSPC is pg_dump's:
    still SpoolFull, not a retryable DumpFailed, and the staging directory is gone."""
    with tiny_filesystem(tmp_path / "tiny-spool", "2m") as spool:
        tight = settings.model_copy(update={"spool_dir": spool, "spool_min_free_bytes": 0})
        dump = DumpActivities(tight).dump_schema
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(
                dump, spec(DumpFormat.DIRECTORY, Compression.NONE, squeezed)
            )
        left = list((spool / RUN_KEY).iterdir())
    assert caught.value.type == "SpoolFull" and caught.value.non_retryable, caught.value
    assert f"SPOOL_DIR {spool}" in caught.value.message and "bytes free" in caught.value.message
    assert left == []


def test_a_localized_pg_dump_message_is_recognized_by_the_full_disk(tmp_path: Path) -> None:
    """pg_dump may say it in another language: then the disk left with nothing free tells."""
    german = "pg_dump: Fehler: Auf dem Gerät ist kein Speicherplatz mehr verfügbar"
    with tiny_filesystem(tmp_path / "tiny-spool", "1m") as spool:
        staging = spool / "run" / "directory.partial"
        staging.mkdir(parents=True)
        pipeline._raise_if_out_of_space(german, staging)  # room left: pg_dump failed otherwise
        with pytest.raises(OSError), (staging / "toc.dat").open("wb") as file:
            file.write(b"\0" * 2 * 1024 * 1024)  # fills the tmpfs
        with pytest.raises(OSError) as caught:
            pipeline._raise_if_out_of_space(german, staging)
    assert caught.value.errno == errno.ENOSPC
