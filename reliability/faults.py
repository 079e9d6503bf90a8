"""Fault injection against the real servers (issue 7): PostgreSQL, SeaweedFS (S3), the Temporal
dev server, the notification receivers and the spool disk fail under a real worker process.

    .venv/bin/python -m reliability.faults                 # every scenario (about 20 minutes)
    .venv/bin/python -m reliability.faults --fast          # those tests/reliability/ runs
    .venv/bin/python -m reliability.faults --only s3_restart_during_upload

One dev stack of its own (own ports and home, so stopping its servers disturbs nobody) serves
every scenario; each scenario starts its own worker (DevStack.spawn_worker, own task queue,
host id and spool). A scenario returns a one-line detail or raises AssertionError; `main` prints
a table and writes reliability/results/faults.json ({"fault", "passed", "detail", "seconds"}).
Each one checks the outcome, that no spool file is left, that no multipart upload is left
unfinished (S3 scenarios) and the webhook the stack's receiver got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from backup.download import download
from backup.files import sha256_of
from backup.models import ExportRequest, ExportResult
from client import connect, start_export
from devstack.ports import free_port
from devstack.seed import register_project
from devstack.stack import ROOT, DevStack

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "faults.json"
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
    return DevStack(
        home, temporal_port=None, ui_port=None, metrics_port=free_port(), scale=0.05, s3=True
    )


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
    """How many attempts the activity's last execution took (history records only the last
    attempt's start, with its number)."""
    history = await handle.fetch_history()
    types = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    found = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and types[e.activity_task_started_event_attributes.scheduled_event_id] == activity_type
    ]
    return max(found, default=0)


async def activity_failure(handle: WorkflowHandle, activity_type: str) -> tuple[str, bool, str]:
    """Type, non-retryable flag and message of the activity's last failure, as the worker
    raised it (the workflow's BackupFailed reports the deepest cause instead)."""
    history = await handle.fetch_history()
    types = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    for e in reversed(history.events):
        attributes = e.activity_task_failed_event_attributes
        if (
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
            and types[attributes.scheduled_event_id] == activity_type
        ):
            info = attributes.failure.application_failure_info
            return info.type, info.non_retryable, attributes.failure.message
    raise AssertionError(f"{activity_type} never failed")


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
        listed = client.list_multipart_uploads(Bucket=stack.s3.bucket, Prefix=f"backups/{project}/")
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


def wait_for_child(pid: int, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.name() == name for child in psutil.Process(pid).children(recursive=True)):
            return
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


# --- the scenarios --------------------------------------------------------------------------------


async def down_while_dumping(
    w: Worker, stop: Callable[[], object], start_again: Callable[[], object], seconds: float
) -> None:
    """Once the worker's pg_dump runs, stop a server for `seconds`, then start it again."""
    await asyncio.to_thread(wait_for_child, w.proc.pid, "pg_dump")
    await asyncio.sleep(1)
    await asyncio.to_thread(stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(start_again)


async def postgres_restart_during_dump(stack: DevStack, work: Path) -> str:
    """PostgreSQL stops (fast shutdown) while pg_dump runs and comes back on the same port:
    the dump fails, is retried after 10 s and the backup completes."""
    project = tenant(stack, "faults_pg", text_rows(60_000))
    with worker(stack, work, "pg", SLOW_DUMP) as w:
        handle = await start(stack, w, project)
        await down_while_dumping(w, stack.postgres.stop, stack.postgres.start_again, PG_DOWN_S)
        result = await result_of(handle)
    dumps = await attempts(handle, "dump_schema")
    assert dumps >= 2, f"the dump ran {dumps} time(s): the fault missed it"
    stored = Path(result.location.removeprefix("file://"))
    assert sha256_of(stored) == result.sha256, "the stored artifact does not match its SHA-256"
    check_clean(w)
    await check_notified(stack, handle, "backup.succeeded")
    return (
        f"PostgreSQL down {PG_DOWN_S:g} s mid-dump; dump attempts {dumps}; "
        f"{result.size_bytes} bytes stored, SHA-256 verified"
    )


async def s3_restart_during_upload(stack: DevStack, work: Path) -> str:
    """SeaweedFS is killed right after the multipart upload is created and restarted 8 s later
    on the same ports and data: the upload is retried, resumes and completes."""
    assert stack.s3 is not None
    project = tenant(stack, "faults_s3", random_bytes(40 * 1024))  # about 40 MB stored
    env = {**MULTIPART, "ZSTD_LEVEL": "1"}
    with worker(stack, work, "s3", env) as w:
        handle = await start(stack, w, project)
        journal = w.spool / str(handle.result_run_id) / "upload-state.json"
        await asyncio.to_thread(wait_for_file, journal)  # CreateMultipartUpload answered
        await asyncio.to_thread(stack.s3.kill)
        await asyncio.sleep(S3_DOWN_S)
        await asyncio.to_thread(stack.s3.start_again)
        result = await result_of(handle)
    uploads = await attempts(handle, "upload_artifact")
    assert uploads >= 2, f"the upload ran {uploads} time(s): the fault missed it"
    fetched = work / "s3-download"
    manifest = await download(result.location, fetched, stack.settings())  # size, SHA-256
    fetched.unlink()
    assert manifest.sha256 == result.sha256
    left = unfinished_uploads(stack, project)
    assert not left, f"unfinished multipart uploads left: {left}"
    check_clean(w)
    await check_notified(stack, handle, "backup.succeeded")
    return (
        f"S3 killed after CreateMultipartUpload, down {S3_DOWN_S:g} s; upload attempts "
        f"{uploads}; {result.size_bytes} bytes downloaded and verified; no unfinished upload"
    )


async def s3_unreachable_short_budget(stack: DevStack, work: Path) -> str:
    """The S3 endpoint never answers (nothing listens on its port). The worker hook cuts the
    upload budget to 3 attempts (1 s, 2 s apart) and cleanup's to 2; the workflow, activities,
    errors, cleanup (whose abort call fails too, after the spool is removed) and notification
    are as in production. s3_stopped_for_good runs the production budget."""
    dead = f"http://127.0.0.1:{free_port()}"
    # Cleanup's own abort call can not reach the store either: 2 quick attempts, not 5 over 30 s.
    budgets = {"upload_artifact": (3, 1.0, 2.0), "cleanup_spool": (2, 1.0, 1.0)}
    env = {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": dead}
    with worker(stack, work, "s3-dead", env, budgets) as w:
        handle = await start(stack, w, "acme")
        error = await failure_of(handle)
    details = failure_details(error)
    assert details["failed_step"] == "uploading", details
    kind, permanent, message = await activity_failure(handle, "upload_artifact")
    assert kind == "StorageError" and not permanent, (kind, permanent)
    assert f"S3 at {dead} unreachable" in message, message
    uploads = await attempts(handle, "upload_artifact")
    assert uploads == 3, f"{uploads} upload attempts, expected the budget of 3"
    check_clean(w)
    await check_notified(stack, handle, "backup.failed", step="uploading")
    return (
        f"{uploads} upload attempts ({kind}: {message[:70]}...), then BackupFailed with "
        f"error_type {details['error_type']}; spool removed; webhook backup.failed (uploading)"
    )


async def s3_stopped_for_good(stack: DevStack, work: Path) -> str:
    """SeaweedFS is killed mid-upload and stays down for the whole production budget (10
    attempts, backoff up to 2 min: about 11 minutes). Script only."""
    assert stack.s3 is not None
    project = tenant(stack, "faults_s3_gone", random_bytes(40 * 1024))
    env = {**MULTIPART, "ZSTD_LEVEL": "1"}
    try:
        with worker(stack, work, "s3-gone", env) as w:
            handle = await start(stack, w, project)
            journal = w.spool / str(handle.result_run_id) / "upload-state.json"
            await asyncio.to_thread(wait_for_file, journal)
            await asyncio.to_thread(stack.s3.kill)
            error = await failure_of(handle, timeout=30 * 60)
    finally:
        await asyncio.to_thread(stack.s3.start_again)
    details = failure_details(error)
    assert details["failed_step"] == "uploading", details
    kind, _, message = await activity_failure(handle, "upload_artifact")
    assert kind == "StorageError", kind
    uploads = await attempts(handle, "upload_artifact")
    assert uploads == 10, f"{uploads} upload attempts, expected the production budget of 10"
    check_clean(w)
    await check_notified(stack, handle, "backup.failed", step="uploading")
    # Cleanup could not reach the store to abort the run's multipart upload: with S3 back, it
    # is still there. Reported, not failed: only a bucket lifecycle rule can catch this case.
    left = unfinished_uploads(stack, project)
    return (
        f"{uploads} upload attempts then BackupFailed ({message[:100]}); "
        f"unfinished multipart uploads once S3 is back: {len(left)}"
    )


async def notifications_down(stack: DevStack, work: Path) -> str:
    """Nothing listens at the SMTP server's or the webhook's address: the backup succeeds after
    the full delivery budget (6 attempts, 135 s of backoff when the port is closed) and records
    both failures.
    Script only; in CI test_failed_notification_never_fails_a_good_backup (tests/workflow/)
    and test_smtp_down_is_a_retryable_failure_without_the_password (tests/unit/) cover it."""
    env = {"SMTP_PORT": str(free_port()), "WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook"}
    with worker(stack, work, "notify-down", env) as w:
        handle = await start(stack, w, "acme")
        result = await result_of(handle)
    outcomes = {n.channel: n for n in result.notifications}
    assert outcomes["console"].status == "sent", outcomes
    assert outcomes["email"].status == "failed" and outcomes["webhook"].status == "failed", outcomes
    check_clean(w)
    assert not await webhooks_for(stack, handle.id, wait=0), "the stack's receiver got a webhook"
    errors = "; ".join(f"{c}: {outcomes[c].error}" for c in ("email", "webhook"))
    return f"backup stored at {result.location.rsplit('/', 1)[-1]}; recorded {errors}"[:300]


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


async def spool_full_before_dump(stack: DevStack, work: Path) -> str:
    """SPOOL_DIR is a 2 MiB tmpfs and the tenant has about 9 MB of table data: the pre-check
    refuses before pg_dump starts, once, naming SPOOL_DIR, needed and free bytes."""
    project = tenant(stack, "faults_spool", text_rows(30_000))
    with (
        tiny_filesystem(work / "tiny-spool") as spool,
        worker(stack, work, "spool", tiny_spool(spool)) as w,
    ):
        handle = await start(stack, w, project)
        error = await failure_of(handle)
        check_clean(w)
    details = failure_details(error)
    assert details == {"failed_step": "dumping", "error_type": "SpoolFull"}, details
    assert f"SPOOL_DIR {spool}" in error.message and "bytes are free" in error.message, error
    dumps = await attempts(handle, "dump_schema")
    assert dumps == 1, f"{dumps} dump attempts: SpoolFull must not be retried"
    kind, permanent, _ = await activity_failure(handle, "dump_schema")
    assert kind == "SpoolFull" and permanent, (kind, permanent)
    await check_notified(stack, handle, "backup.failed", step="dumping")
    return error.message[error.message.index("not enough") :][:200]


async def spool_full_during_write(stack: DevStack, work: Path) -> str:
    """The estimate passes (2.4 MB of table data on a 3 MiB spool) but the uncompressed SQL
    dump writes bytea as hex, 4 MB: ENOSPC mid-write becomes SpoolFull at once, and the partial
    file is gone."""
    project = tenant(stack, "faults_enospc", random_bytes(2048))
    with (
        tiny_filesystem(work / "tiny-spool-2", size="3m") as spool,
        worker(stack, work, "enospc", tiny_spool(spool)) as w,
    ):
        handle = await start(stack, w, project, format="sql", compress=False)
        error = await failure_of(handle)
        check_clean(w)
    details = failure_details(error)
    assert details == {"failed_step": "dumping", "error_type": "SpoolFull"}, details
    assert "ran out of space" in error.message, error.message
    dumps = await attempts(handle, "dump_schema")
    assert dumps == 1, f"{dumps} dump attempts: SpoolFull must not be retried"
    kind, permanent, _ = await activity_failure(handle, "dump_schema")
    assert kind == "SpoolFull" and permanent, (kind, permanent)
    await check_notified(stack, handle, "backup.failed", step="dumping")
    return error.message[error.message.index("SPOOL_DIR") :][:200]


async def temporal_restart_mid_workflow(stack: DevStack, work: Path) -> str:
    """The Temporal dev server (SQLite file) stops while pg_dump runs and starts again on the
    same ports: the workflow completes and the same worker process serves the next backup."""
    project = tenant(stack, "faults_temporal", text_rows(60_000))
    with worker(stack, work, "temporal", SLOW_DUMP) as w:
        handle = await start(stack, w, project)
        await down_while_dumping(w, stack.temporal.stop, stack.temporal.start, TEMPORAL_DOWN_S)
        result = await result_of(handle)
        after = await result_of(await start(stack, w, "acme"), timeout=180)
        assert w.proc.poll() is None, "the worker exited"
    dumps = await attempts(handle, "dump_schema")
    stored = Path(result.location.removeprefix("file://"))
    assert sha256_of(stored) == result.sha256, "the stored artifact does not match its SHA-256"
    check_clean(w)
    await check_notified(stack, handle, "backup.succeeded")
    return (
        f"Temporal down {TEMPORAL_DOWN_S:g} s mid-dump; dump attempts {dumps}; the same worker "
        f"then backed up acme ({after.size_bytes} bytes)"
    )


Scenario = Callable[[DevStack, Path], Awaitable[str]]

# name → (scenario, run by tests/reliability/test_faults.py)
SCENARIOS: dict[str, tuple[Scenario, bool]] = {
    "postgres_restart_during_dump": (postgres_restart_during_dump, True),
    "s3_restart_during_upload": (s3_restart_during_upload, True),
    "s3_unreachable_short_budget": (s3_unreachable_short_budget, True),
    "s3_stopped_for_good": (s3_stopped_for_good, False),
    "notifications_down": (notifications_down, False),
    "spool_full_before_dump": (spool_full_before_dump, True),
    "spool_full_during_write": (spool_full_during_write, True),
    "temporal_restart_mid_workflow": (temporal_restart_mid_workflow, True),
}


@dataclass
class Row:
    fault: str
    passed: bool
    detail: str
    seconds: float


async def run_one(name: str, stack: DevStack, work: Path) -> Row:
    scenario, _ = SCENARIOS[name]
    started = time.monotonic()
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    try:
        detail, passed = await scenario(stack, folder), True
    except NotRunnable as err:
        detail, passed = f"not run: {err}", False
    except Exception as err:  # a scenario's failure is a row of the table, not the end
        detail, passed = f"{type(err).__name__}: {err}"[:500], False
    return Row(name, passed, detail, round(time.monotonic() - started, 1))


async def run(names: list[str], stack: DevStack, work: Path) -> list[Row]:
    rows = []
    for name in names:
        print(f"  fault {name} ...", flush=True)
        rows.append(row := await run_one(name, stack, work))
        print(f"    {'pass' if row.passed else 'FAIL'} ({row.seconds} s) {row.detail}", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    width = max(len(r.fault) for r in rows)
    lines = [f"{'fault':<{width}}  result  seconds  detail"]
    for r in rows:
        verdict = "pass" if r.passed else "FAIL"
        lines.append(f"{r.fault:<{width}}  {verdict:<6}  {r.seconds:>7.1f}  {r.detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fault injection against the real servers.")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), help="repeatable")
    parser.add_argument("--fast", action="store_true", help="only the scenarios CI runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = args.only or [n for n, (_, fast) in SCENARIOS.items() if fast or not args.fast]
    # Not under /tmp/pytest-*: PostgreSQL runs as another user and needs to reach its data dir.
    home = Path(tempfile.mkdtemp(prefix="export-backup-faults-"))
    try:
        # The stack starts outside the event loop: it seeds the tenants with asyncio.run.
        with fault_stack(home / "stack") as stack:
            rows = asyncio.run(run(names, stack, home / "work"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
