"""The real worker (worker.run) with a harness around it, for the crash matrix.

    python -m reliability.crashy_worker      # configuration from the environment, as worker.py

Production code is untouched; this process only adds, through an activity interceptor and
module attributes of its own:

- CRASH_AT=<activity type>: on entering that activity, write CRASH_MARKER and block (heartbeating
  when the activity has a heartbeat timeout) so the test can kill the process right there.
- CRASH_IN=<module>:<function>: the same on entering that function, for a part of an activity
  (store_artifact's verify or its spool removal; the activity heartbeats on meanwhile).
- CRASH_SLOW_PART_SECONDS: wait before each S3 UploadPart, so a kill lands mid-upload.
- CRASH_SLOW_CHUNK_SECONDS: sleep before compressing each 1 MiB of pg_dump output, so "early"
  and "late" in a dump are seconds apart (heartbeats go on: they follow the chunks).
- CRASH_EVENTS: a JSON-lines log of every activity start and every S3 store's requests.
- Shorter timeouts (SHORTENED below), so a dead host is noticed in seconds, not minutes. The
  killed and the restarted worker both apply them: workflow code must see the same values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
)

import worker
from activities import support
from backup import compression
from backup.errors import ConfigurationError
from backup.settings import Settings
from backup.storage import s3
from backup.storage.base import Stored, Transfer
from workflows import policies

# Policy name → (start-to-close, heartbeat, schedule-to-start); None keeps the production value.
# Host timeout 3 min → 10 s, heartbeat 1 min → 10 s, and a killed activity without a heartbeat
# waits for its start-to-close, so those become seconds too.
SHORT_HOST = timedelta(seconds=10)
SHORTENED: dict[str, tuple[timedelta | None, timedelta | None, timedelta | None]] = {
    "VALIDATE": (timedelta(seconds=10), None, None),
    "DUMP": (None, timedelta(seconds=10), SHORT_HOST),
    "VERIFY": (timedelta(seconds=20), None, SHORT_HOST),
    "VERIFY_RESTORE": (None, timedelta(seconds=10), SHORT_HOST),
    "UPLOAD": (None, timedelta(seconds=10), SHORT_HOST),
    "STORE": (None, timedelta(seconds=10), SHORT_HOST),
    "CLEANUP": (timedelta(seconds=20), None, SHORT_HOST),
    "DELIVER": (timedelta(seconds=15), None, None),
}
RETRY_INITIAL = timedelta(seconds=1)  # first retry after 1 s instead of 5-10 s
HEARTBEAT_SECONDS = 2.0  # activities heartbeat every 2 s instead of 5 s (timeout is 10 s)


def describe_shortening() -> str:
    return (
        "host (schedule-to-start) 3 min→10 s; heartbeat timeout of dump/store/upload/verify_restore"
        " "
        "1 min→10 s (heartbeats every 2 s); start-to-close validate 30 s→10 s, verify 30 min→20 s,"
        " cleanup 5 min→20 s, deliver 60 s→15 s; first retry after 1 s"
    )


def shorten_policies() -> None:
    for name, (start_to_close, heartbeat, host) in SHORTENED.items():
        policy: policies.Policy = getattr(policies, name)
        setattr(
            policies,
            name,
            dataclasses.replace(
                policy,
                start_to_close=start_to_close or policy.start_to_close,
                heartbeat=heartbeat or policy.heartbeat,
                schedule_to_start=host or policy.schedule_to_start,
                retry=dataclasses.replace(policy.retry, initial_interval=RETRY_INITIAL),
            ),
        )
    support.HEARTBEAT_SECONDS = HEARTBEAT_SECONDS


def record(event: dict[str, Any]) -> None:
    path = os.environ.get("CRASH_EVENTS")
    if path:
        line = json.dumps({**event, "pid": os.getpid(), "host": os.environ.get("HOST_ID")})
        with open(path, "a") as log:  # one short append per line: lines never interleave
            log.write(line + "\n")


class CrashInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CrashInbound(next)


class _CrashInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        record(
            {
                "event": "start",
                "activity": info.activity_type,
                "attempt": info.attempt,
                "t": time.time(),
            }
        )
        if info.activity_type == os.environ.get("CRASH_AT"):
            marker = Path(os.environ["CRASH_MARKER"])
            marker.write_text(json.dumps({"activity": info.activity_type, "pid": os.getpid()}))
            while True:  # until SIGKILL; heartbeats keep the activity alive meanwhile
                if info.heartbeat_timeout:
                    activity.heartbeat({"step": "crash harness: waiting to be killed"})
                await asyncio.sleep(1)
        return await self.next.execute_activity(input)


class _SlowParts:
    """An S3 client whose UploadPart waits first (on the event loop: heartbeats go on)."""

    def __init__(self, client: Any, delay: float) -> None:
        self._client, self._delay = client, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def upload_part(self, **request: Any) -> Any:
        await asyncio.sleep(self._delay)
        return await self._client.upload_part(**request)


def instrument_s3() -> None:
    """Log what every store sent (resumed uploads must not resend parts); optionally slow the
    parts down so the test can catch an upload in the middle."""
    slow = float(os.environ.get("CRASH_SLOW_PART_SECONDS") or 0)
    if slow:
        open_client = s3.S3Storage._client

        @contextlib.asynccontextmanager
        async def slow_client(self: s3.S3Storage) -> AsyncIterator[Any]:
            async with open_client(self) as client:
                yield _SlowParts(client, slow)

        s3.S3Storage._client = slow_client  # type: ignore[method-assign]
    store = s3.S3Storage.store

    async def logged_store(
        self: s3.S3Storage, artifact: Path, manifest: Any, key: str, transfer: Transfer
    ) -> Stored:
        try:
            return await store(self, artifact, manifest, key, transfer)
        finally:
            record(
                {
                    "event": "store",
                    "key": key,
                    "requests": transfer.requests,
                    "resumed": transfer.resume is not None,
                    "t": time.time(),
                }
            )

    s3.S3Storage.store = logged_store  # type: ignore[method-assign]


def crash_inside() -> None:
    """CRASH_IN: replace the named function by one that writes the marker and blocks (it runs
    in a step's thread; the step's heartbeats go on until the kill)."""
    target = os.environ.get("CRASH_IN")
    if not target:
        return
    module_name, name = target.split(":")
    module = importlib.import_module(module_name)

    def blocked(*args: Any, **kwargs: Any) -> Any:
        marker = Path(os.environ["CRASH_MARKER"])
        marker.write_text(json.dumps({"function": target, "pid": os.getpid()}))
        while True:  # until SIGKILL
            time.sleep(1)

    setattr(module, name, blocked)


def slow_dump() -> None:
    slow = float(os.environ.get("CRASH_SLOW_CHUNK_SECONDS") or 0)
    if not slow:
        return
    write = compression.Compressor.write

    def slow_write(self: compression.Compressor, data: bytes, /) -> int:
        time.sleep(slow)  # the dump's blocking work runs in its own thread, not on the event loop
        return write(self, data)

    compression.Compressor.write = slow_write  # type: ignore[method-assign]


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    shorten_policies()
    instrument_s3()
    crash_inside()
    slow_dump()
    try:
        # Unsandboxed: a sandbox would re-import workflows.policies without the shortening.
        runner = UnsandboxedWorkflowRunner()
        asyncio.run(worker.run(Settings(), [CrashInterceptor()], runner))
    except ConfigurationError as err:
        sys.exit(f"crashy worker: configuration error: {err}")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as worker.main: skip finalization that races the SDK's threads


if __name__ == "__main__":
    main()
