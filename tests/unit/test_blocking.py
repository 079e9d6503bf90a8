"""Blocking work of an async activity (activities/support.py `blocking_step`): the event loop
heartbeats while a thread does the work, and a cancellation stops the thread, whose cleanup has
finished by the time the activity ends."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.support import Blocking, Progress, blocking_step


@activity.defn
async def stalls_without_progress() -> str:
    def work(progress: Progress) -> str:
        progress(10)
        time.sleep(0.55)  # no progress call in here
        return threading.current_thread().name

    return await blocking_step("restoring", work, every=0.1)


async def test_a_stalled_blocking_step_keeps_heartbeating_from_the_event_loop() -> None:
    env = ActivityEnvironment()
    beats: list[tuple] = []
    env.on_heartbeat = lambda *details: beats.append(details)

    thread = await env.run(stalls_without_progress)

    assert thread != threading.main_thread().name
    assert len(beats) >= 4, beats
    assert beats[-1][0]["step"] == "restoring" and beats[-1][0]["bytes"] == 10
    count = len(beats)
    await asyncio.sleep(0.3)
    assert len(beats) == count, "heartbeats outlived the activity"


async def test_a_cancelled_step_stops_its_thread_and_waits_for_its_cleanup() -> None:
    started, cleaned = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    @activity.defn
    async def long_restore() -> None:
        def work(progress: Progress) -> None:
            threads.append(threading.current_thread())
            started.set()
            try:
                for done in range(10_000):
                    progress(done)  # raises once the activity is cancelled
                    time.sleep(0.01)
            finally:
                time.sleep(0.2)  # drops what it created: the activity must wait for this
                cleaned.set()

        async with Blocking("restoring", every=0.05) as blocking:
            await blocking.run(work)

    env = ActivityEnvironment()
    run = asyncio.ensure_future(env.run(long_restore))
    assert await asyncio.to_thread(started.wait, 5)
    env.cancel()
    with pytest.raises(BaseException) as caught:
        await asyncio.wait_for(run, 5)
    assert "cancel" in type(caught.value).__name__.lower(), repr(caught.value)
    assert cleaned.is_set(), "the activity ended before its thread had cleaned up"
    threads[0].join(1)
    assert not threads[0].is_alive()
