"""Fault injection against the real servers (reliability/faults.py): the scenarios fast enough
for CI, each with a worker process of its own on a dev stack of its own, because they stop and
restart that stack's PostgreSQL, SeaweedFS and Temporal server. The slow ones (S3 gone for the
whole 11-minute upload budget, notification receivers down for the 135 s delivery budget) run
only in `python -m reliability.faults`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import DevStack
from reliability import faults


@pytest.fixture(scope="module")
def fault_stack() -> Iterator[DevStack]:
    home = Path(tempfile.mkdtemp(prefix="export-backup-faults-"))  # PostgreSQL must reach it
    try:
        with faults.fault_stack(home) as stack:
            yield stack
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", [n for n, (_, fast) in faults.SCENARIOS.items() if fast])
async def test_fault(name: str, fault_stack: DevStack, tmp_path: Path) -> None:
    scenario, _ = faults.SCENARIOS[name]
    try:
        await scenario(fault_stack, tmp_path)
    except faults.NotRunnable as err:
        pytest.skip(str(err))
