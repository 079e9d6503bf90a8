"""Temporal Schedules through `starter.py schedule ...` on the dev stack (real worker process):
spec and policies as asked, a trigger runs a real backup, an overlapping trigger is skipped,
pause/unpause/delete, update keeps what it is not told to change, and bad flags exit 2 naming
the flag."""

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

from backup.fleet_models import FleetRequest
from backup.models import ExportResult
from client import connect_with, schedules
from client.cli.main import main as cli_main
from devstack.stack import DevStack


@pytest.fixture
async def client(stack: DevStack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    """A client of the stack, and its environment for the starter's Settings()."""
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    yield await connect_with(stack.settings())


async def cli(*argv: str) -> int:
    return await cli_main(["schedule", *argv])


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
        "create",
        "--project",
        "globex",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--format",
        "sql",
        "--note",
        "nightly",
    )
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
        "create",
        "--all",
        "--cron",
        "@daily",
        "--max-concurrent",
        "3",
        "--verify-restore",
        "--catchup-window",
        "30m",
        "--paused",
        "--note",
        "created paused",
    )
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
    assert await cli("update", "--all", "--max-concurrent", "8", "--no-verify-restore") == 0
    d = await handle.describe()
    assert (d.schedule.state.paused, d.schedule.state.note) == (True, "maintenance")
    info = await schedules.describe(client, schedule_id)
    assert FleetRequest.model_validate(info["input"]) == FleetRequest(max_concurrent=8)
    assert info["cron"] == "@daily"

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
        (["create", "--project", "acme", "--cron", "0 2 * * 5#3"], "--cron"),  # '#' is a comment
        (
            ["create", "--project", "acme", "--cron", "0 2 * * *", "--timezone", "Mars/Base"],
            "--timezone",
        ),
        (
            ["create", "--project", "acme", "--cron", "0 2 * * *", "--catchup-window", "soon"],
            "--catchup-window",
        ),
        (["create", "--project", "a*b", "--cron", "0 2 * * *"], "--project"),
        (["create", "--project", "fleet", "--cron", "0 2 * * *"], "--project"),
        (["create", "--all", "--cron", "@daily", "--max-concurrent", "0"], "--max-concurrent"),
        (["update", "--project", "a*b", "--cron", "@daily"], "--project"),
    ],
)
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


@pytest.fixture
async def paused_schedule(client: Client) -> AsyncIterator[str]:
    """A paused project schedule, created as a user would; deleted afterwards."""
    code = await cli(
        "create",
        "--project",
        "umbrella",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--format",
        "sql",
        "--catchup-window",
        "30m",
        "--paused",
        "--note",
        "on hold",
    )
    assert code == 0
    yield "export-backup-umbrella"
    await client.get_schedule_handle("export-backup-umbrella").delete()


async def test_update_changes_only_what_is_given(client: Client, paused_schedule: str) -> None:
    assert (
        await cli("update", "--project", "umbrella", "--cron", "30 4 * * 1-5", "--verify-restore")
        == 0
    )
    info = await schedules.describe(client, paused_schedule)
    assert info["cron"] == "30 4 * * 1-5"
    assert info["input"] == {"project_id": "umbrella", "format": "sql", "verify_restore": True}
    assert (info["paused"], info["note"]) == (True, "on hold")
    assert (info["timezone"], info["catchup_window_seconds"]) == ("Europe/Berlin", 1800)
    [calendar] = (
        await client.get_schedule_handle(paused_schedule).describe()
    ).schedule.spec.calendars
    assert [(r.start, r.end) for r in [*calendar.hour, *calendar.minute]] == [(4, 4), (30, 30)]
    assert [(r.start, r.end) for r in calendar.day_of_week] == [(1, 5)]

    async def listed_cron() -> str | None:
        for entry in await schedules.list_backup_schedules(client):
            if entry.id == paused_schedule and entry.schedule:
                cron = schedules.cron_text(entry.schedule.spec)
                return cron if cron == "30 4 * * 1-5" else None
        return None

    assert await eventually(listed_cron)

    assert await cli("update", paused_schedule, "--no-verify-restore", "--format", "custom") == 0
    info = await schedules.describe(client, paused_schedule)
    assert info["input"] == {"project_id": "umbrella", "format": "custom"}
    assert (info["cron"], info["paused"], info["note"]) == ("30 4 * * 1-5", True, "on hold")


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--cron", "every night"], "--cron"),
        (["--cron", "61 2 * * *", "--format", "custom"], "--cron"),  # server-checked
        (["--timezone", "Mars/Base"], "--timezone"),
        (["--catchup-window", "soon"], "--catchup-window"),
        (["--max-concurrent", "3"], "--max-concurrent"),  # a project's schedule
    ],
)
async def test_bad_update_exits_2_and_changes_nothing(
    client: Client,
    paused_schedule: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    option: str,
) -> None:
    handle = client.get_schedule_handle(paused_schedule)
    before = await handle.describe()
    assert await cli("update", paused_schedule, *argv) == 2
    err = capsys.readouterr().err
    assert option in err
    assert "Traceback" not in err
    after = await handle.describe()
    assert after.info.last_updated_at == before.info.last_updated_at
    assert after.schedule == before.schedule


@pytest.mark.parametrize(
    "argv",
    [
        ["update", "export-backup-nobody", "--cron", "@daily"],
        ["pause", "export-backup-nobody"],
        ["trigger", "export-backup-nobody"],
        ["describe", "export-backup-nobody"],
        ["delete", "export-backup-nobody"],
    ],
)
async def test_an_unknown_schedule_exits_1_in_one_line(
    client: Client, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert await cli(*argv) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "no schedule 'export-backup-nobody' (see: starter.py schedule list)"
    ]
