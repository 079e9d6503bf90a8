"""The clients an operator starts a backup with outside Python, run against the dev stack: the
`temporal` CLI and the TypeScript example (clients/typescript)."""

from __future__ import annotations

import os
import shutil
import subprocess

from devstack.stack import ROOT, DevStack

TYPESCRIPT = ROOT / "clients" / "typescript"


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


def start_by_typescript(stack: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`node start-export.mjs <args>` (project, format, request id) against the stack."""
    node = shutil.which("node")
    assert node, "node is required for the TypeScript client test"
    assert (TYPESCRIPT / "node_modules" / "@temporalio" / "client").exists(), "run make test"
    return subprocess.run(
        [node, "start-export.mjs", *args],
        cwd=TYPESCRIPT,
        env={**os.environ, "TEMPORAL_ADDRESS": stack.temporal.address},
        capture_output=True,
        text=True,
        timeout=120,
    )
