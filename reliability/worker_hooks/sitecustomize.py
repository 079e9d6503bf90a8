"""Loaded by a fault-injection worker (PYTHONPATH=reliability/worker_hooks) before worker.py:
shortens the retry budget of the activity types named in FAULTS_RETRY_BUDGETS, so a "never
comes back" fault ends in seconds instead of the production budget's minutes. Everything else,
the workflow code included, stays as in production.

    FAULTS_RETRY_BUDGETS='{"store_artifact": [attempts, first interval s, max interval s]}'

Local activities (back_up_small_schema) included.

Patching workflows.policies would not do: the workflow sandbox re-executes that module. So a
workflow interceptor, added to every Worker this process builds, rewrites the retry policy of
those activities as the workflow schedules them (non-retryable error types are kept).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

_BUDGETS: dict[str, list[float]] = json.loads(os.environ.get("FAULTS_RETRY_BUDGETS") or "{}")

if _BUDGETS:
    from temporalio.common import RetryPolicy
    from temporalio.worker import (
        Interceptor,
        StartActivityInput,
        StartLocalActivityInput,
        Worker,
        WorkflowInboundInterceptor,
        WorkflowInterceptorClassInput,
        WorkflowOutboundInterceptor,
    )

    def _shorten(input: StartActivityInput | StartLocalActivityInput) -> None:
        budget = _BUDGETS.get(input.activity)
        if budget is not None:
            attempts, first, maximum = budget
            kept = input.retry_policy.non_retryable_error_types if input.retry_policy else None
            input.retry_policy = RetryPolicy(
                initial_interval=timedelta(seconds=first),
                maximum_interval=timedelta(seconds=maximum),
                maximum_attempts=int(attempts),
                non_retryable_error_types=kept,
            )

    class _Outbound(WorkflowOutboundInterceptor):
        def start_activity(self, input: StartActivityInput) -> Any:
            _shorten(input)
            return super().start_activity(input)

        def start_local_activity(self, input: StartLocalActivityInput) -> Any:
            _shorten(input)
            return super().start_local_activity(input)

    class _Inbound(WorkflowInboundInterceptor):
        def init(self, outbound: WorkflowOutboundInterceptor) -> None:
            super().init(_Outbound(outbound))

    class _ShorterBudgets(Interceptor):
        def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput
        ) -> type[WorkflowInboundInterceptor]:
            return _Inbound

    _original_init = Worker.__init__

    def _init(self: Worker, *args: Any, **kwargs: Any) -> None:
        kwargs["interceptors"] = [*kwargs.get("interceptors", ()), _ShorterBudgets()]
        _original_init(self, *args, **kwargs)

    Worker.__init__ = _init  # type: ignore[method-assign]
