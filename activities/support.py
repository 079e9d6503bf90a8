"""What every activity shares: domain errors → ApplicationError, heartbeats, blocking steps in
threads that cancellation reaches, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from backup.errors import BackupError, DatabaseUnavailable, error_type

T = TypeVar("T")
# Called by blocking work with its bytes done so far; raises once the activity is cancelled.
Progress = Callable[[int], None]
HEARTBEAT_SECONDS = 5.0
STEP_SECONDS = "export_backup_step_seconds"
# Steps take from a tenth of a second (validate) to half an hour (a large dump).
STEP_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


@contextlib.contextmanager
def step_errors(step: str) -> Iterator[None]:
    """Map domain errors to ApplicationError (type = class name; non-retryable unless the error
    says otherwise) and count failures and step durations for the metrics endpoint."""
    started = time.monotonic()
    try:
        yield
    except BackupError as err:
        _count_failure(step, error_type(type(err)))
        raise ApplicationError(
            str(err), type=error_type(type(err)), non_retryable=not err.retryable
        ) from err
    except psycopg.OperationalError as err:
        # Connection-level trouble is worth retrying; the message never holds the password.
        _count_failure(step, error_type(DatabaseUnavailable))
        raise ApplicationError(
            f"database unavailable: {str(err).strip()}",
            type=error_type(DatabaseUnavailable),
            non_retryable=not DatabaseUnavailable.retryable,
        ) from err
    except Exception as err:
        _count_failure(step, type(err).__name__)
        raise
    else:
        activity.metric_meter().create_histogram_float(
            STEP_SECONDS, "Duration of successful backup steps", "s"
        ).record(time.monotonic() - started, {"step": step})


def _count_failure(step: str, error_type: str) -> None:
    activity.metric_meter().create_counter(
        "export_backup_step_failures", "Failed backup step attempts by error type"
    ).add(1, {"step": step, "error_type": error_type})


def count_backup(project_id: str, outcome: str) -> None:
    """One finished backup (the workflow plans its notifications once, at the very end)."""
    activity.metric_meter().create_counter(
        "export_backup_backups", "Finished backups by project and outcome"
    ).add(1, {"project_id": project_id, "outcome": outcome})


def count_bytes(metric: str, amount: int) -> None:
    activity.metric_meter().create_counter(metric, "Bytes processed by backups", "By").add(amount)


@dataclass
class ByteProgress:
    """Progress shared between a worker thread and the heartbeat task of an async activity."""

    step: str
    done: int = 0
    total: int | None = None
    resume: dict[str, Any] | None = None  # a backend's resumable state, heartbeated with it

    def update(self, done: int) -> None:
        """Called from the worker thread; raising here aborts the thread's work."""
        self.done = done
        if activity.is_cancelled():
            raise CancelledError("activity cancelled")

    def details(self) -> dict[str, object]:
        return {
            "step": self.step,
            "bytes": self.done,
            "total_bytes": self.total,
            "resume": self.resume,
        }


@contextlib.asynccontextmanager
async def heartbeating(
    progress: ByteProgress, every: float = HEARTBEAT_SECONDS
) -> AsyncIterator[None]:
    """Heartbeat progress in the background for as long as the async activity runs; a
    cancellation arrives with a heartbeat's answer, so `every` bounds how late it is noticed."""

    async def beat() -> None:
        while True:
            activity.heartbeat(progress.details())
            await asyncio.sleep(every)

    if activity.info().is_local:  # no heartbeats; its cancellation comes without one
        yield
        return
    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class Blocking:
    """The blocking work of an async activity (pg_restore, psql, decryption, removing files),
    each call in a thread of its own, while the event loop heartbeats the progress every `every`
    seconds: a slow call never starves the heartbeat, and async work between calls (a download)
    is heartbeated too. Each call gets the progress callback (`Progress`) to call with its bytes
    done; once the activity is cancelled that callback raises, and the activity waits for the
    thread to stop and clean up before it re-raises, so nothing a call started outlives it.

        async with Blocking("restoring", every=1.0) as blocking:
            manifest = await download(...)
            restored = await blocking.run(lambda progress: restore(..., should_stop=progress))
    """

    def __init__(self, step: str, *, every: float = HEARTBEAT_SECONDS) -> None:
        self.progress = ByteProgress(step)
        self._every = every
        self._beating: contextlib.AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> Blocking:
        self._beating = heartbeating(self.progress, self._every)
        await self._beating.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._beating is not None
        await self._beating.__aexit__(*exc)

    async def run(self, work: Callable[[Progress], T]) -> T:
        return await _in_thread(f"blocking {self.progress.step}", work, self.progress.update)


async def blocking_step(
    step: str, work: Callable[[Progress], T], *, every: float = HEARTBEAT_SECONDS
) -> T:
    """One blocking call, heartbeated and stoppable as in `Blocking`:
    `await blocking_step("verifying", lambda progress: verify(path, on_progress=progress))`."""
    async with Blocking(step, every=every) as blocking:
        return await blocking.run(work)


async def _in_thread(name: str, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a thread of its own (no shared pool for one call to queue behind: the
    worker's activity slots bound how many run), with the activity's context, so it may
    heartbeat and see cancellation. On cancel, wait for the thread, then re-raise."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        try:
            result, error = context.run(fn, *args), None
        except BaseException as err:  # handed to the awaiting activity
            result, error = None, err
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=name).start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await done
        raise
