"""Hostile and bad inputs through the real client and worker (reliability/hostile_inputs.py holds
the table): each is refused at once, without retries, naming the field or the project; each valid
look-alike project backs up exactly its own schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.client import Client

from client import connect
from devstack.stack import DevStack
from reliability.hostile_inputs import (
    CASES,
    MAX_SECONDS,
    Case,
    create_lookalikes,
    drop_lookalikes,
    run_case,
)


@pytest.fixture(scope="module")
def lookalikes(stack: DevStack) -> Iterator[None]:
    """Look-alike tenants exist only while this module runs (other tests list all projects)."""
    create_lookalikes(stack.postgres.url())
    yield
    drop_lookalikes(stack.postgres.url())


@pytest.fixture
async def client(stack: DevStack) -> Client:
    return await connect(stack.temporal.address, "default")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_input(stack: DevStack, client: Client, lookalikes: None, case: Case) -> None:
    row = await run_case(stack, client, case)
    assert row.passed, f"{row.input}: {row.detail}"
    if case.error_type is not None:
        assert row.error_type == case.error_type and row.seconds < MAX_SECONDS
