"""Sync activities heartbeat on a timer: a step that makes no progress for a while (one slow
compressor write) is still seen alive, so no second attempt starts beside it."""

from __future__ import annotations

import time

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities import support
from activities.support import SyncHeartbeat


@activity.defn
def stalls_without_progress() -> None:
    with SyncHeartbeat("dumping") as heartbeat:
        heartbeat(10)
        time.sleep(0.55)  # no progress call in here


def test_a_stalled_sync_step_keeps_heartbeating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "HEARTBEAT_SECONDS", 0.1)
    env = ActivityEnvironment()
    beats: list[tuple] = []
    env.on_heartbeat = lambda *details: beats.append(details)

    env.run(stalls_without_progress)

    assert len(beats) >= 4, beats
    assert beats[-1][0]["step"] == "dumping" and beats[-1][0]["bytes"] == 10
    count = len(beats)
    time.sleep(0.3)
    assert len(beats) == count, "the heartbeat thread outlived the activity"
