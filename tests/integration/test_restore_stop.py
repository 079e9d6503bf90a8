"""A restore stops when its progress callback raises (what activity cancellation does): the
running pg_restore or psql is killed at once and what the restore created is dropped."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import psycopg
import pytest

from backup.models import DumpFormat
from backup.pgdump import pg_bin_dir
from backup.restore import restore_as
from devstack.postgres import PostgresServer
from tests.dumps import dump


class Stop(Exception):
    pass


def tools_running() -> list[str]:
    tools = ("pg_restore", "psql", "pg_dump")
    running = []
    for child in psutil.Process().children(recursive=True):
        try:
            name = child.name()
        except psutil.NoSuchProcess:  # it exited between the listing and the read
            continue
        if name in tools:
            running.append(name)
    return running


@pytest.mark.parametrize(
    ("fmt", "into"),
    [
        (DumpFormat.CUSTOM, "acme_stopped_copy"),
        (DumpFormat.SQL, "acme_stopped_copy"),
        (DumpFormat.CUSTOM, "acme"),
    ],
)
def test_a_stopped_restore_kills_its_tool_and_leaves_nothing(
    postgres: PostgresServer, scratch_db: str, tmp_path: Path, fmt: DumpFormat, into: str
) -> None:
    outcome = dump(postgres.url(), "acme", tmp_path, fmt)
    target = postgres.url() if into != "acme" else scratch_db  # own name: an empty database
    polls: list[float] = []

    def stop_soon(_: int) -> None:
        polls.append(time.monotonic())
        if tools_running():
            raise Stop

    started = time.monotonic()
    with pytest.raises(Stop):
        restore_as(
            outcome.artifact_path,
            outcome.manifest,
            target,
            into,
            pg_bin_dir(),
            scratch="export_backup_restore_stopped",
            should_stop=stop_soon,
        )
    assert time.monotonic() - started < 30
    assert tools_running() == []
    with psycopg.connect(target) as conn:
        schemas = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (into,)
        ).fetchone()
        scratch = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = 'export_backup_restore_stopped'"
        ).fetchone()
    assert scratch == (0,)
    assert schemas == (0,)
