"""Temporal Schedules through `starter.py schedule ...` on the dev stack (real worker process):
spec and policies as asked, a trigger runs a real backup, an overlapping trigger is skipped,
pause/unpause/delete, and bad flags exit 2 naming the flag."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client, ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode

import starter
from backup.fleet_models import FleetRequest
from backup.models import ExportResult
from devstack.stack import DevStack
from workflows import schedules
from workflows.client import connect_with


@pytest.fixture
async def client(stack: DevStack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    """A client of the stack, and its environment for the starter's Settings()."""
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    yield await connect_with(stack.settings())


async def cli(*argv: str) -> int:
    return await starter.main(["schedule", *argv])


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Poll until `check` returns something truthy (schedules act asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.3)


async def test_project_schedule_spec_and_a_triggered_backup(client: Client) -> None:
    schedule_id = "export-backup-globex"
    code = await cli(
        "create", "--project", "globex", "--cron", "0 2 * * *",
        "--timezone", "Europe/Berlin", "--format", "sql", "--note", "nightly",
    )  # fmt: skip
    assert code == 0
    try:
        d = await client.get_schedule_handle(schedule_id).describe()
        assert d.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert d.schedule.policy.catchup_window == timedelta(hours=1)
        assert d.schedule.spec.time_zone_name == "Europe/Berlin"
        assert (d.schedule.state.paused, d.schedule.state.note) == (False, "nightly")
        for next_run in d.info.next_action_times[:3]:  # 02:00 in Berlin, summer or winter
            local = next_run.astimezone(ZoneInfo("Europe/Berlin"))
            assert (local.hour, local.minute) == (2, 0)
        info = await schedules.describe(client, schedule_id)
        assert info["cron"] == "0 2 * * *"
        assert info["workflow"] == "ExportBackupWorkflow"
        assert info["task_queue"] == "export-backup"
        assert info["input"] == {"project_id": "globex", "format": "sql"}

        assert await cli("trigger", schedule_id) == 0

        async def started() -> str | None:
            recent = (await schedules.describe(client, schedule_id))["recent"]
            return recent[0]["workflow_id"] if recent else None

        workflow_id = await eventually(started)
        assert workflow_id and workflow_id.startswith("export-backup-globex-")
        handle = client.get_workflow_handle(workflow_id, result_type=ExportResult)
        result = await asyncio.wait_for(handle.result(), 120)
        assert (result.project_id, result.schema_name, result.format) == (
            "globex",
            "tenant_globex",
            "sql",
        )
        listed = [wf async for wf in client.list_workflows("ProjectId = 'globex'")]
        assert workflow_id in {wf.id for wf in listed}
    finally:
        await client.get_schedule_handle(schedule_id).delete()


async def test_overlapping_trigger_is_skipped(client: Client) -> None:
    """The scheduled backup targets a task queue no worker polls, so it stays running."""
    schedule_id = f"export-backup-overlap-{uuid.uuid4().hex[:6]}"
    body = schedules.export_request_body("acme")
    schedule = schedules.export_schedule(
        body, f"idle-{uuid.uuid4().hex[:6]}", schedules.Timing(cron="0 2 * * *")
    )
    handle = await schedules.create_schedule(client, schedule_id, schedule)
    try:
        await handle.trigger()

        async def one_running() -> list[str]:
            return (await schedules.describe(client, schedule_id))["running"]

        [running] = await eventually(one_running)
        await handle.trigger()

        async def skipped() -> int:
            return (await handle.describe()).info.num_actions_skipped_overlap

        assert await eventually(skipped) == 1
        info = await schedules.describe(client, schedule_id)
        assert (info["actions"], info["running"]) == (1, [running])
        await client.get_workflow_handle(running).terminate("test done")
    finally:
        await handle.delete()


async def test_pause_unpause_list_and_delete(client: Client) -> None:
    schedule_id = "export-backup-fleet"
    code = await cli(
        "create", "--all", "--cron", "@daily", "--max-concurrent", "3",
        "--verify-restore", "--catchup-window", "30m", "--paused", "--note", "created paused",
    )  # fmt: skip
    assert code == 0
    handle = client.get_schedule_handle(schedule_id)
    d = await handle.describe()
    assert (d.schedule.state.paused, d.schedule.state.note) == (True, "created paused")
    assert d.schedule.policy.catchup_window == timedelta(minutes=30)
    info = await schedules.describe(client, schedule_id)
    assert info["workflow"] == "BackupAllProjectsWorkflow"
    assert FleetRequest.model_validate(info["input"]) == FleetRequest(
        max_concurrent=3, verify_restore=True
    )

    assert await cli("unpause", schedule_id, "--note", "go") == 0
    assert (await handle.describe()).schedule.state.paused is False
    assert await cli("pause", schedule_id, "--note", "maintenance") == 0
    d = await handle.describe()
    assert (d.schedule.state.paused, d.schedule.state.note) == (True, "maintenance")

    async def listed() -> bool:
        return schedule_id in {s.id for s in await schedules.list_backup_schedules(client)}

    assert await eventually(listed)
    assert await cli("list") == 0
    assert await cli("create", "--all", "--cron", "@daily") == 1  # exists: delete first

    assert await cli("delete", schedule_id) == 0
    with pytest.raises(RPCError) as caught:
        await handle.describe()
    assert caught.value.status == RPCStatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["create", "--project", "acme", "--cron", "every night"], "--cron"),
        (["create", "--project", "acme", "--cron", "61 2 * * *"], "--cron"),  # server-checked
        (["create", "--project", "acme", "--cron", "0 2 * * *", "--timezone", "Mars/Base"],
         "--timezone"),
        (["create", "--project", "acme", "--cron", "0 2 * * *", "--catchup-window", "soon"],
         "--catchup-window"),
        (["create", "--project", "a*b", "--cron", "0 2 * * *"], "--project"),
        (["create", "--project", "fleet", "--cron", "0 2 * * *"], "--project"),
        (["create", "--all", "--cron", "@daily", "--max-concurrent", "0"], "--max-concurrent"),
        (["pause", "export-backup-nobody"], "no schedule"),
        (["trigger", "export-backup-nobody"], "no schedule"),
        (["describe", "export-backup-nobody"], "no schedule"),
    ],
)  # fmt: skip
async def test_bad_flags_exit_2_naming_the_flag(
    client: Client, capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    assert await cli(*argv) == 2
    err = capsys.readouterr().err
    assert option in err
    assert "Traceback" not in err
    if argv[0] == "create":  # nothing was created
        schedule_id = schedules.SCHEDULE_PREFIX + ("fleet" if argv[1] == "--all" else argv[2])
        with pytest.raises(RPCError):
            await client.get_schedule_handle(schedule_id).describe()
