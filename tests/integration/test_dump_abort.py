"""An aborted dump (size cap passed, or cancelled) returns promptly and leaves nothing in the
spool: pg_dump is killed, the row counting running beside it is cancelled on the server, and the
directory format's staging directory is removed."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backup import pg_process, pipeline
from backup.errors import BackupTooLarge, DumpFailed
from backup.models import Compression, DumpFormat
from devstack.postgres import PostgresServer
from tests.dumps import dump

SLOW_COUNT = "SELECT pg_sleep(60) /* export-backup slow count stand-in */"


class Cancelled(Exception):
    """What the activity's heartbeat raises when Temporal cancels the dump."""


def cancel_at_first_progress(_: int) -> None:
    raise Cancelled


@pytest.fixture(scope="module")
def bulky(postgres: PostgresServer) -> Iterator[str]:
    """A schema whose directory dump takes long enough (about 60 MB uncompressed) to be caught
    while pg_dump still writes."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bulky CASCADE; CREATE SCHEMA bulky")
        for table in ("a", "b"):
            conn.execute(f"CREATE TABLE bulky.{table} (id int, body text)")
            conn.execute(
                f"INSERT INTO bulky.{table} SELECT g, repeat(md5(g::text), 6) "
                "FROM generate_series(1, 150000) g"
            )
    yield "bulky"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bulky CASCADE")


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.ZSTD])
def test_the_directory_format_stops_at_the_cap_while_pg_dump_runs(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bulky: str,
    compression: Compression,
) -> None:
    """The cap applies to what pg_dump writes into the staging directory, not only to the tar:
    the dump fails with the same BackupTooLarge as the other formats while pg_dump still runs,
    and leaves no staging directory and no partial file."""
    cap = 1024 * 1024
    running_when_stopped: list[bool] = []
    stop = pg_process.stop

    def spy(proc: subprocess.Popen[bytes]) -> None:
        running_when_stopped.append(proc.poll() is None)
        stop(proc)

    monkeypatch.setattr(pg_process, "stop", spy)
    seen: list[int] = []
    with pytest.raises(BackupTooLarge, match="BACKUP_MAX_BYTES"):
        dump(
            postgres.url(),
            bulky,
            tmp_path,
            DumpFormat.DIRECTORY,
            compression,
            max_bytes=cap,
            on_progress=seen.append,
        )
    assert running_when_stopped == [True], "pg_dump had finished: the cap came too late"
    assert max(seen, default=0) <= cap
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", [DumpFormat.DIRECTORY, DumpFormat.CUSTOM])
def test_a_cancelled_dump_leaves_nothing(
    postgres: PostgresServer, tmp_path: Path, bulky: str, fmt: DumpFormat
) -> None:
    with pytest.raises(Cancelled):
        dump(postgres.url(), bulky, tmp_path, fmt, on_progress=cancel_at_first_progress)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_pg_dump_leaves_no_directory(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulky: str
) -> None:
    """pg_dump dying on its own (here: killed from outside at the first progress report, while
    it writes) is a DumpFailed, and the half-written staging directory goes with it."""
    start = pg_process.start
    started: list[subprocess.Popen[bytes]] = []

    def remember(*args: Any) -> subprocess.Popen[bytes]:
        started.append(start(*args))
        return started[-1]

    def kill_pg_dump(_: int) -> None:
        if started[0].poll() is None:
            started[0].kill()

    monkeypatch.setattr(pg_process, "start", remember)
    with pytest.raises(DumpFailed, match="pg_dump exited with code -9"):
        dump(
            postgres.url(),
            bulky,
            tmp_path,
            DumpFormat.DIRECTORY,
            Compression.NONE,
            on_progress=kill_pg_dump,
        )
    assert list(tmp_path.iterdir()) == []


def _slow_counts(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
    """Stands in for exact_row_counts on a schema whose count(*) takes a minute: one long query
    on the same connection, in the same snapshot transaction."""
    conn.execute(SLOW_COUNT)
    return dict.fromkeys(tables, 0)


def _slow_counts_running(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s AND pid <> pg_backend_pid()",
            (SLOW_COUNT,),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("fmt", [DumpFormat.DIRECTORY, DumpFormat.CUSTOM])
@pytest.mark.parametrize("abort", ["cap", "cancel"])
def test_an_aborted_dump_does_not_wait_for_its_row_counts(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: DumpFormat,
    abort: str,
) -> None:
    monkeypatch.setattr(pipeline, "exact_row_counts", _slow_counts)
    expected: type[Exception] = BackupTooLarge if abort == "cap" else Cancelled
    started = time.monotonic()
    with pytest.raises(expected):
        if abort == "cap":
            dump(postgres.url(), "umbrella", tmp_path, fmt, Compression.NONE, max_bytes=64 * 1024)
        else:
            dump(postgres.url(), "umbrella", tmp_path, fmt, on_progress=cancel_at_first_progress)
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"the aborted dump waited {elapsed:.1f} s for its row counts"
    assert _slow_counts_running(postgres.url()) == 0, "the counting query still runs"
    assert list(tmp_path.iterdir()) == []
