"""What every activity shares: domain errors → ApplicationError, heartbeats, metrics."""

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

from backup.errors import BackupError

T = TypeVar("T")
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
        _count_failure(step, type(err).__name__)
        raise ApplicationError(
            str(err), type=type(err).__name__, non_retryable=not err.retryable
        ) from err
    except psycopg.OperationalError as err:
        _count_failure(step, "DatabaseUnavailable")
        # Connection-level trouble is worth retrying; the message never holds the password.
        raise ApplicationError(
            f"database unavailable: {str(err).strip()}", type="DatabaseUnavailable"
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

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn` in a worker thread that cancellation reaches: on cancel, wait until the thread has
    stopped (its progress calls raise once the activity is cancelled) and cleaned up after
    itself, then re-raise, so nothing it started outlives the activity."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


class SyncHeartbeat:
    """Throttled heartbeats for sync (threaded) activities; each progress call also checks
    cancellation.

    Used as a context manager, a side thread also heartbeats whenever progress calls have been
    silent for HEARTBEAT_SECONDS, so one slow chunk (a high zstd level on a busy host) never
    starves the heartbeat and gets a live attempt taken for dead, which would start a second
    attempt beside it."""

    def __init__(self, step: str) -> None:
        self.progress = ByteProgress(step)
        self._last = 0.0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __call__(self, done: int) -> None:
        self.progress.done = done
        if time.monotonic() - self._last >= HEARTBEAT_SECONDS:
            self._send()
        if activity.is_cancelled():
            raise CancelledError("activity cancelled")

    def _send(self) -> None:
        self._last = time.monotonic()
        activity.heartbeat(self.progress.details())

    def __enter__(self) -> SyncHeartbeat:
        stop = self._stop = threading.Event()
        context = contextvars.copy_context()  # carries the activity context to the side thread

        def fill_gaps() -> None:
            while not stop.wait(HEARTBEAT_SECONDS / 4):
                if time.monotonic() - self._last >= HEARTBEAT_SECONDS:
                    context.run(self._send)

        self._thread = threading.Thread(target=fill_gaps, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None and self._thread is not None
        self._stop.set()
        self._thread.join()
