"""MAX_CONCURRENT_DUMPS: a process-wide cap on pg_dump processes, whatever the activity slots;
and the S3 backend's reuse of one session per credential environment."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.dump import dump_slot
from activities.support import Blocking, Progress
from backup.settings import Settings
from backup.storage.s3_client import _credential_env, _session


def test_the_default_cap_is_two_dumps() -> None:
    assert Settings().max_concurrent_dumps == 2
    assert Settings(max_concurrent_dumps=5).max_concurrent_dumps == 5


async def in_slot(env: ActivityEnvironment, work: Callable[[], None]) -> None:
    """`work` in a dump's thread holding one of 1 slot, as the dump activity holds it."""

    @activity.defn
    async def dump() -> None:
        async with Blocking("dumping", every=0.1) as blocking:

            def hold(_: Progress) -> None:
                with dump_slot(1, blocking.progress):
                    work()

            await blocking.run(hold)

    await env.run(dump)


async def test_a_dump_beyond_the_cap_waits_heartbeating_until_a_slot_frees() -> None:
    order: list[str] = []
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        held.set()
        release.wait(10)
        order.append("first done")

    def second() -> None:
        order.append("second started")
        time.sleep(0.3)  # a few heartbeats while it dumps

    waiting = ActivityEnvironment()
    heartbeats: list[dict[str, object]] = []
    waiting.on_heartbeat = lambda *details: heartbeats.append(details[0])
    one = asyncio.ensure_future(in_slot(ActivityEnvironment(), first))
    assert await asyncio.to_thread(held.wait, 10)
    two = asyncio.ensure_future(in_slot(waiting, second))
    await asyncio.sleep(1.5)
    assert order == []  # still waiting for the slot
    # and telling Temporal it is alive, and why it makes no progress
    assert [b["step"] for b in heartbeats[-3:]] == ["waiting for a dump slot"] * 3, heartbeats
    release.set()
    await asyncio.wait_for(asyncio.gather(one, two), 10)
    assert order == ["first done", "second started"]
    assert heartbeats[-1]["step"] == "dumping"  # the slot taken, the step is the dump again


async def test_a_cancellation_while_waiting_for_a_slot_stops_the_wait() -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        held.set()
        release.wait(10)

    one = asyncio.ensure_future(in_slot(ActivityEnvironment(), holder))
    assert await asyncio.to_thread(held.wait, 10)
    env = ActivityEnvironment()
    entered: list[str] = []
    waiter = asyncio.ensure_future(in_slot(env, lambda: entered.append("entered")))
    await asyncio.sleep(0.5)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 5)  # within the 1 s the wait checks for cancellation
    assert entered == []
    release.set()
    await asyncio.wait_for(one, 10)
    # The cancelled wait took no slot: the next dump gets the only one at once.
    await asyncio.wait_for(in_slot(ActivityEnvironment(), lambda: entered.append("next")), 5)
    assert entered == ["next"]


def test_the_s3_session_is_reused_until_the_credentials_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first")
    session = _session(_credential_env())
    assert _session(_credential_env()) is session
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    assert _session(_credential_env()) is not session
