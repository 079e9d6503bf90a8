"""The worker as a process: SIGTERM stops it cleanly, and SIGKILL in the middle of a dump loses
nothing: a worker restarted on the same host redoes the dump and the backup completes."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import psutil
import psycopg
import pytest
from temporalio.api.enums.v1 import EventType

from backup.models import ExportRequest
from client import connect, start_export
from devstack.seed import register_project
from devstack.stack import DevStack

CRASH_QUEUE = "crash-test"


@pytest.fixture(scope="module")
def crashy_project(stack: DevStack) -> str:
    """A tenant big enough that a slow (zstd level 19) dump runs for several seconds."""
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS crashy CASCADE")
        conn.execute("CREATE SCHEMA crashy")
        conn.execute(
            "CREATE TABLE crashy.blobs AS SELECT g AS id,"
            " md5(g::text) || repeat(md5(random()::text), 8) AS body"
            " FROM generate_series(1, 150000) g"
        )
        register_project(conn, "crashy", "crashy")
    return "crashy"


@pytest.fixture
def worker_overrides(tmp_path: Path) -> dict[str, str]:
    return {
        "TEMPORAL_TASK_QUEUE": CRASH_QUEUE,
        "HOST_ID": "crash-host",
        "SPOOL_DIR": str(tmp_path / "spool"),
        "ZSTD_LEVEL": "19",
        "ZSTD_THREADS": "1",
        "METRICS_PORT": "0",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }


@pytest.fixture
def workers() -> Iterator[list[psutil.Popen]]:
    started: list = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_stops_the_worker_cleanly(
    stack: DevStack, worker_overrides: dict[str, str], tmp_path: Path, workers: list
) -> None:
    log = tmp_path / "worker.log"
    worker = stack.spawn_worker(log, worker_overrides)
    workers.append(worker)
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=30)
    output = log.read_text()
    assert code == 0, f"the worker exited with {code}; its log ends with:\n{output[-3000:]}"
    assert "shutting down" in output


def wait_for_pg_dump(worker_pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(worker_pid).children(recursive=True)
        if any(child.name() == "pg_dump" for child in children):
            return
        time.sleep(0.05)
    raise AssertionError("the dump never started")


async def test_sigkill_during_the_dump_loses_nothing(
    stack: DevStack,
    crashy_project: str,
    worker_overrides: dict[str, str],
    tmp_path: Path,
    workers: list,
) -> None:
    log = tmp_path / "worker.log"
    first = stack.spawn_worker(log, worker_overrides)
    workers.append(first)
    client = await connect(stack.temporal.address, "default")
    settings = stack.settings().model_copy(update={"temporal_task_queue": CRASH_QUEUE})
    handle = await start_export(client, settings, ExportRequest(project_id=crashy_project))

    await asyncio.to_thread(wait_for_pg_dump, first.pid)
    first.kill()  # SIGKILL: no shutdown, no cleanup, the dump dies half-written
    first.wait()
    workers.append(stack.spawn_worker(log, worker_overrides))  # same host, same spool

    result = await asyncio.wait_for(handle.result(), timeout=420)  # a loaded CI box is slow

    artifact = Path(unquote(urlparse(result.location).path))
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == result.sha256
    history = await handle.fetch_history()
    dump_attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and history.events[
            e.activity_task_started_event_attributes.scheduled_event_id - 1
        ].activity_task_scheduled_event_attributes.activity_type.name
        == "dump_schema"
    ]
    assert dump_attempts == [2], "the dump should have been retried once, on the restarted worker"
    spool = Path(worker_overrides["SPOOL_DIR"])
    assert not any(spool.rglob("*.partial")) and not (spool / result.run_id).exists()
