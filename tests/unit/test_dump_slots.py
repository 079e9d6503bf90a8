"""MAX_CONCURRENT_DUMPS: a process-wide cap on pg_dump processes, whatever the activity slots;
and the S3 backend's reuse of one session per credential environment."""

from __future__ import annotations

import threading
import time

import pytest
from temporalio.testing import ActivityEnvironment

from activities.dump import dump_slot
from backup.settings import Settings
from backup.storage.s3_client import _credential_env, _session


def test_the_default_cap_is_two_dumps() -> None:
    assert Settings().max_concurrent_dumps == 2
    assert Settings(max_concurrent_dumps=5).max_concurrent_dumps == 5


def test_a_dump_beyond_the_cap_waits_heartbeating_until_a_slot_frees() -> None:
    order: list[str] = []
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        with dump_slot(1):
            held.set()
            release.wait(10)
            order.append("first done")

    def second() -> None:
        with dump_slot(1):
            order.append("second started")

    waiting = ActivityEnvironment()
    heartbeats: list[object] = []
    waiting.on_heartbeat = lambda *details: heartbeats.append(details)
    one = threading.Thread(target=ActivityEnvironment().run, args=(first,))
    one.start()
    assert held.wait(10)
    two = threading.Thread(target=waiting.run, args=(second,))
    two.start()
    time.sleep(1.5)
    assert order == []  # still waiting for the slot
    assert heartbeats  # and telling Temporal it is alive
    release.set()
    one.join(10)
    two.join(10)
    assert order == ["first done", "second started"]


def test_a_cancellation_while_waiting_for_a_slot_stops_the_wait() -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with dump_slot(1):
            held.set()
            release.wait(10)

    one = threading.Thread(target=ActivityEnvironment().run, args=(holder,))
    one.start()
    assert held.wait(10)
    env = ActivityEnvironment()
    threading.Timer(0.5, env.cancel).start()
    outcome: list[BaseException] = []

    def wait_for_slot() -> None:
        try:
            with dump_slot(1):
                pass
        except BaseException as err:
            outcome.append(err)

    env.run(wait_for_slot)
    release.set()
    one.join(10)
    assert outcome and "cancel" in repr(outcome[0]).lower()


def test_the_s3_session_is_reused_until_the_credentials_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first")
    session = _session(_credential_env())
    assert _session(_credential_env()) is session
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    assert _session(_credential_env()) is not session
