"""The `temporal` CLI as an operator runs it against the dev stack."""

from __future__ import annotations

import subprocess

from devstack.stack import DevStack


def start_by_cli(
    stack: DevStack, workflow_type: str, wf_id: str, request: str, *more: str
) -> subprocess.CompletedProcess[str]:
    """`temporal workflow start` of one workflow with a JSON request (and `more` flags)."""
    return stack.temporal.cli(
        "workflow",
        "start",
        "--type",
        workflow_type,
        "--task-queue",
        "export-backup",
        "--workflow-id",
        wf_id,
        "--input",
        request,
        *more,
    )
