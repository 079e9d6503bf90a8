"""An event loop thread for S3 calls made from threads that have no worker loop to use (the
dump activity hands its own loop to the part streamer)."""

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


def background_loop() -> asyncio.AbstractEventLoop:
    """One event loop thread per process that sends parts when no worker loop is given: its
    shared S3 client is opened once, not per dump."""
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
