"""What every reliability script shares: a dev stack of its own, reading a workflow's history
(activity attempts and failures, failed workflow tasks), the plain-text table each prints, and
the JSON each writes to reliability/results/ for report.py. The scripts keep only their own rows
and checks."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

from devstack.ports import free_port
from devstack.stack import DevStack

RESULTS = Path(__file__).resolve().parent / "results"


def own_stack(home: Path, **options: Any) -> DevStack:
    """A dev stack of the script's own (free ports, small seed), so stopping its servers
    disturbs nobody; `options` as DevStack takes them (storage="s3", s3=True). Start it with
    `with`, outside the event loop (it seeds the tenants with asyncio.run)."""
    return DevStack(
        home, temporal_port=None, ui_port=None, metrics_port=free_port(), scale=0.05, **options
    )


@dataclass
class Failure:
    error_type: str
    non_retryable: bool
    message: str


@dataclass
class ActivityHistory:
    """One workflow run's activities, by activity type."""

    scheduled: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # The attempt number of each start: the history records only the last attempt of each
    # scheduled activity (with its number), so [3] means three attempts of one scheduling.
    started: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    failures: dict[str, list[Failure]] = field(default_factory=lambda: defaultdict(list))
    workflow_task_failures: int = 0
    workflow_tasks: int = 0  # completed workflow tasks
    local: list[str] = field(default_factory=list)  # local activities' types, in order
    patches: list[str] = field(default_factory=list)  # workflow.patched markers, in order

    def attempts(self, activity_type: str) -> int:
        """The highest attempt the activity reached (0: it never started)."""
        return max(self.started.get(activity_type, []), default=0)

    def highest_attempts(self) -> dict[str, int]:
        """Every scheduled activity type with the highest attempt it reached."""
        return {name: self.attempts(name) for name in self.scheduled}

    def last_failure(self, activity_type: str) -> Failure:
        """The activity's last failure as the worker raised it (the workflow's BackupFailed
        reports the deepest cause instead)."""
        found = self.failures.get(activity_type)
        if not found:
            raise AssertionError(f"{activity_type} never failed")
        return found[-1]


async def activity_history(handle: WorkflowHandle[Any, Any]) -> ActivityHistory:
    return read_history([event async for event in handle.fetch_history_events()])


def read_history(events: Iterable[HistoryEvent]) -> ActivityHistory:
    history = ActivityHistory()
    types: dict[int, str] = {}
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            types[event.event_id] = name
            history.scheduled[name] += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            history.started[types[started.scheduled_event_id]].append(started.attempt)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failed = event.activity_task_failed_event_attributes
            info = failed.failure.application_failure_info
            history.failures[types[failed.scheduled_event_id]].append(
                Failure(info.type, info.non_retryable, failed.failure.message)
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            history.workflow_task_failures += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            history.workflow_tasks += 1
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            _read_marker(event, history)
    return history


def _read_marker(event: HistoryEvent, history: ActivityHistory) -> None:
    """The SDK's markers: a local activity's outcome ("data" names its type) or a patch."""
    marker = event.marker_recorded_event_attributes
    if marker.marker_name == "core_local_activity":
        data = json.loads(marker.details["data"].payloads[0].data)
        history.local.append(data["activity_type"])
    elif marker.marker_name == "core_patch":
        history.patches.append(json.loads(marker.details["patch-data"].payloads[0].data)["id"])


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def text_table(rows: Sequence[Any], columns: Sequence[str], clip: int | None = None) -> str:
    """Dataclass rows as aligned text, one column per named field (`passed` as PASS/FAIL);
    the last column is not padded and, with `clip`, cut to that many characters."""
    cells = [[_cell(getattr(row, c)) for c in columns] for row in rows]
    if clip is not None:
        cells = [[*row[:-1], row[-1][:clip]] for row in cells]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = [[c.replace("_", " ") for c in columns], *cells]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line[:-1], widths, strict=False)) + "  " + line[-1]
        for line in lines
    )


def write_json(rows: Sequence[Any], path: Path) -> Path:
    """The rows (dataclasses) as results/<part>.json, which report.py turns into report.md."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [dataclasses.asdict(row) for row in rows]
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return path
