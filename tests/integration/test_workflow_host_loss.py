"""The pinned host disappears: the run claims another host and dumps again there.

On the dev server, because the time-skipping server never fires schedule-to-start timeouts;
the host timeout is shortened so the test takes seconds, not minutes.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from backup.models import Step
from tests.standins import harness, run_with_workers, running
from workflows import policies


@pytest.fixture
def short_host_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    short = timedelta(seconds=3)
    for name in ("DUMP", "VERIFY", "UPLOAD", "STORE", "CLEANUP"):
        policy = getattr(policies, name)
        monkeypatch.setattr(policies, name, dataclasses.replace(policy, schedule_to_start=short))


@pytest.mark.usefixtures("short_host_timeout")
async def test_lost_host_moves_the_run_to_another_host(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    # The first claimed host has no worker (it died after answering): the dump never starts
    # there, its schedule-to-start timeout fires, and the run is dumped again on host b.
    h = harness(dev_env, task_queue, ["gone", "b"])
    h.unsandboxed = True
    gone, alive = h.fakes.host_queues
    result = await run_with_workers(h, [alive], {"project_id": "acme"})
    assert h.fakes.calls.count("claim_host") == 2
    assert h.fakes.calls.count("dump_schema") == 1
    assert h.fakes.calls.count("store_artifact") == 1
    # After a re-dump the store's host cleans up too (unfinished uploads of the lost host).
    assert f"cleanup_spool@{alive}" in h.fakes.calls
    assert f"cleanup_spool@{gone}" not in h.fakes.calls  # nobody there to clean
    assert result.location


@pytest.mark.usefixtures("short_host_timeout")
async def test_every_host_lost_fails_with_a_clear_error(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(dev_env, task_queue, ["gone"])
    h.unsandboxed = True
    async with running(h.workers([])):
        handle = await h.start({"project_id": "acme"})
        with pytest.raises(Exception) as caught:
            await handle.result()
    assert (
        "SCHEDULE_TO_START" in str(caught.value.__cause__)
        or "schedule" in str(caught.value.__cause__).lower()
    )
    assert h.fakes.calls.count("claim_host") == policies.MAX_HOST_ATTEMPTS
    assert h.fakes.notifications[-1].failed_step is Step.DUMPING


async def test_progress_query_reports_the_step(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(dev_env, task_queue)
    h.fakes.block_dump = True
    async with running(h.workers(h.fakes.host_queues)):
        handle = await h.start({"project_id": "acme"})
        await h.fakes.dump_started.wait()
        progress = await handle.query("progress")
        assert progress["step"] == "dumping"
        assert progress["host_queue"] == h.fakes.host_queues[0]
        h.fakes.block_dump = False
        await handle.result()
        final = await handle.query("progress")
    assert final["step"] == "completed"
    assert final["location"].endswith(".dump.zst")
