"""The stage of every fault: a dev stack of its own, a real worker process per scenario, the
tenants a fault needs, and what the checks look at (spool, unfinished uploads, webhooks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from backup import layout
from backup.models import ExportRequest, ExportResult
from client import connect, start_export
from devstack.seed import register_project
from devstack.stack import ROOT, DevStack
from reliability.harness import activity_history, own_stack

HERE = Path(__file__).resolve().parent.parent  # reliability/
HOOKS = HERE / "worker_hooks"  # sitecustomize.py: shorter retry budgets, FAULTS_RETRY_BUDGETS

# How long each server stays down. PostgreSQL: longer than nothing, shorter than the dump's
# first retry interval (10 s). S3: past the upload's first retry (5 s), so one retry fails too.
PG_DOWN_S = 3.0
S3_DOWN_S = 8.0
TEMPORAL_DOWN_S = 5.0
RESULT_TIMEOUT_S = 300.0

# Worker settings: a dump slow enough (seconds) for a fault to land in it; an upload in 5 MiB
# parts sent one at a time, so it is still running when the store dies.
SLOW_DUMP = {"ZSTD_LEVEL": "19", "ZSTD_THREADS": "1"}
MULTIPART = {"STORAGE_BACKEND": "s3", "S3_PART_SIZE_MIB": "5", "S3_CONCURRENCY": "1"}


class NotRunnable(Exception):
    """The machine can not stage this fault (e.g. no tmpfs mount); reported, not passed."""


# --- the stack and its worker ------------------------------------------------------------------


def fault_stack(home: Path) -> DevStack:
    """A dev stack on free ports with S3, for the scenarios (start it with `with`)."""
    return own_stack(home, s3=True)


@dataclass
class Worker:
    proc: Any
    queue: str
    spool: Path
    log: Path


@contextlib.contextmanager
def worker(
    stack: DevStack,
    work: Path,
    name: str,
    env: dict[str, str] | None = None,
    budgets: dict[str, tuple[int, float, float]] | None = None,
) -> Iterator[Worker]:
    """A real worker process on its own queue, host id and spool, stopped afterwards.
    `budgets` shortens retry budgets by activity type (see worker_hooks/)."""
    queue = f"faults-{name}-{uuid.uuid4().hex[:6]}"
    env = dict(env or {})
    spool = Path(env.pop("SPOOL_DIR", str(work / f"spool-{name}")))
    overrides = {
        "TEMPORAL_TASK_QUEUE": queue,
        "HOST_ID": f"{queue}-host",
        "SPOOL_DIR": str(spool),
        "METRICS_PORT": "0",
        "SHUTDOWN_GRACE_SECONDS": "5",
        # The tenants are small: the faults land in the pinned steps unless a scenario asks
        # for the one-step backup (SMALL_SCHEMA_MAX_BYTES in `env`).
        "SMALL_SCHEMA_MAX_BYTES": "0",
        **env,
    }
    if budgets:
        overrides["PYTHONPATH"] = os.pathsep.join([str(HOOKS), str(ROOT)])
        overrides["FAULTS_RETRY_BUDGETS"] = json.dumps(budgets)
    log = work / f"worker-{name}.log"
    proc = stack.spawn_worker(log, overrides, timeout=120)
    try:
        yield Worker(proc, queue, spool, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def start(stack: DevStack, w: Worker, project: str, **fields: Any) -> WorkflowHandle:
    client = await connect(stack.temporal.address, "default")
    settings = stack.settings().model_copy(update={"temporal_task_queue": w.queue})
    return await start_export(client, settings, ExportRequest(project_id=project, **fields))


async def result_of(handle: WorkflowHandle, timeout: float = RESULT_TIMEOUT_S) -> ExportResult:
    """The result, riding out a Temporal server that is down for a while (the client's own
    retries give up after about ten seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.wait_for(handle.result(), deadline - time.monotonic())  # type: ignore[no-any-return]
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


async def failure_of(handle: WorkflowHandle, timeout: float = RESULT_TIMEOUT_S) -> ApplicationError:
    """The BackupFailed error a failed backup ends with."""
    try:
        await result_of(handle, timeout)
    except WorkflowFailureError as err:
        cause = err.cause
        assert isinstance(cause, ApplicationError) and cause.type == "BackupFailed", repr(cause)
        return cause
    raise AssertionError("the backup succeeded, a failure was expected")


async def attempts(handle: WorkflowHandle, activity_type: str) -> int:
    """How many attempts the activity's last execution took."""
    return (await activity_history(handle)).attempts(activity_type)


async def activity_failure(handle: WorkflowHandle, activity_type: str) -> tuple[str, bool, str]:
    """Type, non-retryable flag and message of the activity's last failure."""
    failure = (await activity_history(handle)).last_failure(activity_type)
    return failure.error_type, failure.non_retryable, failure.message


# --- what the checks look at --------------------------------------------------------------------


def tenant(stack: DevStack, schema: str, create_table: str) -> str:
    """A project whose schema holds one table made by `create_table` ({s} = the schema)."""
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(create_table.format(s=schema))
        register_project(conn, schema, schema)
    return schema


def text_rows(rows: int) -> str:
    """About 290 bytes a row of compressible text: slow under ZSTD_LEVEL=19 on one thread."""
    return (
        "CREATE TABLE {s}.blobs AS SELECT g AS id,"
        " md5(g::text) || repeat(md5(random()::text), 8) AS body"
        f" FROM generate_series(1, {rows}) g"
    )


def random_bytes(kib: int) -> str:
    """`kib` rows of 1 KiB random bytea: incompressible, so the artifact is as big as the data."""
    return (
        "CREATE TABLE {s}.noise AS SELECT g AS id,"
        " decode(string_agg(md5(random()::text), ''), 'hex') AS bytes"
        f" FROM generate_series(1, {kib}) g, generate_series(1, 64) k GROUP BY g"
    )


def leftovers(spool: Path) -> list[str]:
    return sorted(str(p.relative_to(spool)) for p in spool.rglob("*")) if spool.exists() else []


def unfinished_uploads(stack: DevStack, project: str) -> list[str]:
    assert stack.s3 is not None
    client = stack.s3.client()
    try:
        listed = client.list_multipart_uploads(
            Bucket=stack.s3.bucket, Prefix=layout.project_prefix(project)
        )
    finally:
        client.close()
    return [upload["Key"] for upload in listed.get("Uploads", [])]


async def webhooks_for(stack: DevStack, workflow_id: str, wait: float = 15) -> list[dict[str, Any]]:
    """Payloads the stack's receiver got for this workflow (deliveries may trail the result)."""
    assert stack.webhooks is not None
    deadline = time.monotonic() + wait
    while True:
        found = [
            payload
            for d in list(stack.webhooks.deliveries)
            if (payload := json.loads(d.body))["workflow"]["id"] == workflow_id
        ]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def wait_for_child(pid: int, name: str, timeout: float = 120) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # it exited meanwhile
                if child.name() == name:
                    return child
        time.sleep(0.05)
    raise AssertionError(f"no {name} process appeared under the worker")


def wait_for_file(path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.002)


def check_clean(w: Worker) -> None:
    left = leftovers(w.spool)
    assert not left, f"spool files left in {w.spool}: {left}"


async def check_notified(
    stack: DevStack, handle: WorkflowHandle, event: str, step: str | None = None
) -> None:
    payloads = await webhooks_for(stack, handle.id)
    events = [p["event"] for p in payloads]
    assert events == [event], f"webhook events {events}, expected [{event!r}]"
    if step is not None:
        assert payloads[0]["failure"]["step"] == step, payloads[0]["failure"]


def failure_details(error: ApplicationError) -> dict[str, Any]:
    details = error.details[0] if error.details else {}
    assert isinstance(details, dict), details
    return details


async def down_while_dumping(
    w: Worker,
    stop: Callable[[], object],
    start_again: Callable[[], object],
    seconds: float,
    *,
    hold_the_dump: bool = False,
) -> None:
    """Once the worker's pg_dump runs, stop a server for `seconds`, then start it again.

    `hold_the_dump` freezes that pg_dump (SIGSTOP) from the moment it is seen until the server
    is back. zstd's jobs and the pipe take in tens of MB at once, so a free-running pg_dump may
    already have read all it needs from the server a fraction of a second after it starts and
    then outlive the restart unharmed; held, it resumes mid-dump against the restarted server
    (its connection and the exported snapshot gone) whatever the timing."""
    dump = await asyncio.to_thread(wait_for_child, w.proc.pid, "pg_dump")
    if hold_the_dump:
        dump.suspend()
    else:
        await asyncio.sleep(1)
    await asyncio.to_thread(stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(start_again)
    if hold_the_dump:
        with contextlib.suppress(psutil.NoSuchProcess):
            dump.resume()


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` at `path` (needs root or CAP_SYS_ADMIN), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        raise NotRunnable(f"can not mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True, check=False)


def tiny_spool(spool: Path) -> dict[str, str]:
    return {"SPOOL_DIR": str(spool), "SPOOL_MIN_FREE_BYTES": "0"}
