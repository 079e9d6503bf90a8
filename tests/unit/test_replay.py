"""Determinism guard: recorded histories of representative runs must replay on today's code.

A change that alters the sequence of commands fails here instead of breaking running backups;
such a change needs `workflow.patched(...)`. Regenerate a history only when the old behaviour is
gone from every cluster (see README "Tests"); `python -m reliability.record_histories` records
new ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.export_backup import ExportBackupWorkflow
from workflows.fleet import BackupAllProjectsWorkflow
from workflows.restore_backup import RestoreBackupWorkflow

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))

# Workflow type (as recorded in the history) → the class that must replay it.
WORKFLOWS: dict[str, type] = {
    "ExportBackupWorkflow": ExportBackupWorkflow,
    "RestoreBackupWorkflow": RestoreBackupWorkflow,
    "BackupAllProjectsWorkflow": BackupAllProjectsWorkflow,
}


def workflow_type(path: Path) -> str:
    started = json.loads(path.read_text())["events"][0]
    return str(started["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def test_histories_are_present() -> None:
    assert len(HISTORIES) >= 8
    assert {workflow_type(p) for p in HISTORIES} == set(WORKFLOWS), "a workflow type unrecorded"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    name = workflow_type(path)
    assert name in WORKFLOWS, f"{path.name}: no workflow class mapped for type {name}"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[WORKFLOWS[name]], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
