"""One way for a workflow to call an activity under its Policy, keeping the activity's result
type: as a regular activity (optionally pinned to a host's queue) or as a local activity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

from workflows.policies import Policy

R = TypeVar("R")  # an activity's result
_WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


@overload
async def call_activity(
    fn: Callable[..., Awaitable[R]],
    policy: Policy,
    summary: str,
    *args: Any,
    task_queue: str | None = None,
    local: bool = False,
    wait_cancellation: bool = False,
) -> R: ...


@overload
async def call_activity(
    fn: Callable[..., R],
    policy: Policy,
    summary: str,
    *args: Any,
    task_queue: str | None = None,
    local: bool = False,
    wait_cancellation: bool = False,
) -> R: ...


async def call_activity(
    fn: Callable[..., Any],
    policy: Policy,
    summary: str,
    *args: Any,
    task_queue: str | None = None,
    local: bool = False,
    wait_cancellation: bool = False,
) -> Any:
    """`fn`'s result, async activity or sync. `local`: run it in the workflow task's worker (the
    short steps any worker answers; no dispatch, no extra workflow task). `wait_cancellation`:
    a cancelled local activity is waited for (as every regular one is), for one that cleans up
    what it wrote."""
    if local:
        return await workflow.execute_local_activity(
            fn,
            args=args,
            start_to_close_timeout=policy.start_to_close,
            retry_policy=policy.retry,
            cancellation_type=_WAIT if wait_cancellation else ActivityCancellationType.TRY_CANCEL,
            summary=summary,
        )
    return await workflow.execute_activity(
        fn,
        args=args,
        task_queue=task_queue,
        start_to_close_timeout=policy.start_to_close,
        schedule_to_start_timeout=policy.schedule_to_start if task_queue else None,
        heartbeat_timeout=policy.heartbeat,
        retry_policy=policy.retry,
        # Wait for a cancelled dump or upload to stop writing before cleanup runs.
        cancellation_type=_WAIT,
        summary=summary,
    )
