"""The webhook payload's documented shape (README "Webhooks"), and its delivery through Temporal's
retries: 5xx retried with the same Idempotency-Key and body, other 4xx delivered exactly once."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backup.notify.webhook import payload, timestamp
from tests.notifications import LINK, failed, succeeded

RFC3339_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 26, 13, 16, 46, tzinfo=UTC), "2026-11-26T13:16:46.000Z"),
        (datetime(2026, 11, 26, 13, 16, 46, 600000, tzinfo=UTC), "2026-11-26T13:16:46.600Z"),
        (datetime(2026, 11, 26, 13, 16, 46, 123456, tzinfo=UTC), "2026-11-26T13:16:46.123Z"),
        # Another offset is the same instant, written in UTC.
        (
            datetime(2026, 11, 26, 14, 16, 46, 5000, tzinfo=timezone(timedelta(hours=1))),
            "2026-11-26T13:16:46.005Z",
        ),
    ],
)
def test_occurred_at_is_rfc3339_utc_with_milliseconds(moment: datetime, expected: str) -> None:
    assert timestamp(moment) == expected
    assert RFC3339_MILLIS.match(expected)


def test_payload_fields_and_types_match_the_readme_table() -> None:
    ok = json.loads(json.dumps(payload(succeeded(), LINK)))
    assert set(ok) == {
        "version",
        "id",
        "event",
        "occurred_at",
        "project_id",
        "workflow",
        "backup",
        "failure",
        "text",
    }
    assert ok["occurred_at"] == "2026-11-26T12:00:00.000Z"
    assert set(ok["workflow"]) == {"id", "run_id", "url"}
    assert set(ok["backup"]) == {
        "location",
        "size_bytes",
        "sha256",
        "table_count",
        "format",
        "duration_seconds",
    }
    assert ok["failure"] is None
    bad = json.loads(json.dumps(payload(failed(), None)))
    assert bad["backup"] is None and bad["workflow"]["url"] is None
    assert set(bad["failure"]) == {"step", "error", "duration_seconds"}
    no_time = payload(succeeded().model_copy(update={"occurred_at": None}), LINK)
    assert no_time["occurred_at"] is None
