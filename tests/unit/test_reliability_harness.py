"""The reliability scripts' shared harness on recorded histories (tests/histories/): the
attempts and failures it reads, the table it prints and the JSON report.py reads back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from reliability.harness import read_history, text_table, write_json

HISTORIES = Path(__file__).parents[1] / "histories"


def recorded(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, json.loads((HISTORIES / f"{name}.json").read_text()))


def test_a_backup_that_notified_three_channels_reads_as_such() -> None:
    history = read_history(recorded("succeeded_verify_restore").events)
    assert history.scheduled["deliver_notification"] == 3
    assert history.started["deliver_notification"] == [1, 1, 1]
    assert history.attempts("dump_schema") == 1 and history.attempts("never_ran") == 0
    assert history.highest_attempts()["verify_restore"] == 1
    assert history.workflow_task_failures == 0
    with pytest.raises(AssertionError, match="upload_artifact never failed"):
        history.last_failure("upload_artifact")


def test_the_failing_activity_is_found_with_its_type_and_message() -> None:
    history = read_history(recorded("failed_inactive_project").events)
    failure = history.last_failure("validate_project")
    assert failure.error_type == "ProjectInactive" and failure.non_retryable
    assert "SUSPENDED" in failure.message
    assert "dump_schema" not in history.scheduled


@dataclass
class Row:
    fault: str
    passed: bool
    seconds: float
    detail: str


def test_rows_print_aligned_and_round_trip_as_json(tmp_path: Path) -> None:
    rows = [Row("s3_restart", True, 12.345, "ok " * 50), Row("pg", False, 3.0, "boom")]
    lines = text_table(rows, ["fault", "passed", "seconds", "detail"], clip=20).splitlines()
    assert lines[0].split() == ["fault", "passed", "seconds", "detail"]
    assert lines[1].split()[:3] == ["s3_restart", "PASS", "12.35"]
    assert lines[2].split() == ["pg", "FAIL", "3.00", "boom"]
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # one column start
    assert len(lines[1]) - lines[1].index("ok") == 20
    path = write_json(rows, tmp_path / "results" / "faults.json")
    assert json.loads(path.read_text())[1] == {
        "fault": "pg",
        "passed": False,
        "seconds": 3.0,
        "detail": "boom",
    }
