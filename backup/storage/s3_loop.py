"""The event loop S3 parts go out from while a sync activity's thread dumps."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from backup.storage.s3_client import close_shared_clients

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def parts_loop(worker_loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    """Where the parts of a dump go out from. The dump runs in a sync activity's thread; the
    worker's own event loop (the one that built the activities) is the best place: its shared S3
    client serves the upload step too, and a second client (a botocore session and service
    model of its own) cost 16 MB of RSS. Without one, or when the dump runs on that loop's own
    thread (ActivityEnvironment in an async test), a loop thread of the process does it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: the worker's loop runs elsewhere
        if worker_loop is not None and worker_loop.is_running():
            return worker_loop
    return background_loop()


def background_loop() -> asyncio.AbstractEventLoop:
    """One event loop thread per process that sends parts when no worker loop can (see
    `parts_loop`): its shared S3 client is opened once, not per dump."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="s3-parts", daemon=True).start()
            atexit.register(_close, _loop)
        return _loop


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: close the loop's S3 client (its sockets), as the worker does for its own."""
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(close_shared_clients(), loop).result(5)


def run_in_background(
    coro: Coroutine[Any, Any, T],
    timeout: float | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> T:
    return asyncio.run_coroutine_threadsafe(coro, loop or background_loop()).result(timeout)
