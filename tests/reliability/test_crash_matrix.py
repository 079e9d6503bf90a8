"""A representative corner of the crash matrix (reliability/crash_matrix.py runs all of it): a
worker process SIGKILLed while pg_dump runs, mid-way through a multipart upload, inside the
store step's verify with the run moving to another host, inside its spool removal, while the
dump sends its parts, with SPOOL_MODE=stream on another host, and inside the one-step backup
of a small schema (a local activity) on the same host and, mid-upload, on another. Each backup
must still complete with exactly one verified artifact, no spool or unfinished upload left, one
notification per channel, and a re-dump only where the spool is gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.ports import free_port
from devstack.stack import DevStack
from devstack.temporal import venv_binary
from reliability.crashes import Host, Matrix, cell, seed_project


@pytest.fixture(scope="module")
def s3_stack(server_dir: Path) -> Iterator[DevStack]:
    """Its own dev stack: the session `stack` stores locally, the matrix needs SeaweedFS."""
    if venv_binary("weed") is None:
        pytest.skip("SeaweedFS (`weed`) is not installed")
    with DevStack(
        server_dir / "crash-stack",
        temporal_port=None,
        ui_port=None,
        metrics_port=free_port(),
        scale=0.05,
        storage="s3",
    ) as running:
        seed_project(running.postgres.url())
        yield running


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("dump early", "same"),
        ("upload mid-way", "same"),
        ("store verify", "other"),
        ("store cleanup", "same"),
        ("dump sending parts", "same"),
        ("stream dump", "other"),
        ("one-step dump", "same"),
        ("one-step parts", "other"),
    ],
)
async def test_crash_cell(s3_stack: DevStack, tmp_path: Path, name: str, host: Host) -> None:
    row = await Matrix(s3_stack, tmp_path).run(cell(name), host)
    assert row.passed, row.detail
