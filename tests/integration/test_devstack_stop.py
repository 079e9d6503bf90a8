"""`make dev` leaves nothing behind, however it is stopped.

Each test starts the real `make dev` (free ports, its own home) as a job in its own process
group, as a shell would, stops it one way, and then finds no process of it 10 s later: neither
one of those it had when stopped (make, the stack, PostgreSQL and its backends, Temporal,
SeaweedFS, the worker, pg_dump) nor any process naming its home directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from backup.models import ExportRequest
from backup.settings import Settings
from client import connect_with, start_export
from devstack.lifecycle import lock_home
from devstack.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 10
START_TIMEOUT_S = 180
READY_LINE = "dev stack running"

pytestmark = pytest.mark.timeout(900)


class MakeDev:
    """One `make dev` run, the job of an imaginary shell (its own process group)."""

    def __init__(self, home: Path, target: str = "dev", ready: str = READY_LINE) -> None:
        self.home = home
        self.log_file = home.with_name(home.name + ".log")
        ports = "--temporal-port 0 --ui-port 0 --metrics-port 0"
        with self.log_file.open("wb") as log:
            self.make = subprocess.Popen(
                ["make", "--no-print-directory", target, f"DEV_ARGS=--home {home} {ports}"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while ready not in self.log():
            assert self.make.poll() is None, f"make dev exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"make dev did not start:\n{self.log()}"
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """make and everything below it, now."""
        top = psutil.Process(self.make.pid)
        return [top, *top.children(recursive=True)]

    def stack(self) -> psutil.Process:
        """The `python -m devstack up` process under make."""
        (found,) = [p for p in self.processes() if "devstack" in p.cmdline()]
        return found

    def settings(self) -> Settings:
        lines = (self.home / "stack.env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        return Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]

    def signal_group(self, sig: int) -> None:
        os.killpg(self.make.pid, sig)

    def assert_nothing_left(self, seen: list[psutil.Process]) -> None:
        """Within GONE_WITHIN_S: none of `seen` and nothing naming the home directory runs."""
        deadline = time.monotonic() + GONE_WITHIN_S
        while True:
            self.make.poll()  # reap make itself, our child
            alive = [p for p in seen if _alive(p)] + self._naming_home()
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        described = "\n".join(f"  {p.pid} {' '.join(_cmdline(p))[:160]}" for p in alive)
        assert not alive, f"still running {GONE_WITHIN_S} s later:\n{described}\n{self.log()}"

    def _naming_home(self) -> list[psutil.Process]:
        home = str(self.home)
        return [
            p
            for p in psutil.process_iter()
            if p.pid != os.getpid() and any(home in arg for arg in _cmdline(p))
        ]

    def kill(self) -> None:
        """Clean-up for a failed test: nothing of it may survive into the next one."""
        for proc in [p for p in self.processes() if _alive(p)] if _alive_pid(self.make) else []:
            proc.kill()
        for proc in self._naming_home():
            proc.kill()


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def _alive(proc: psutil.Process) -> bool:
    """Running (is_running also checks the start time, so a reused pid is not it) and not a
    zombie, which is only an exit status its parent has not collected yet."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _alive_pid(popen: subprocess.Popen[bytes]) -> bool:
    return popen.poll() is None


@pytest.fixture
def dev_home(server_dir: Path, request: pytest.FixtureRequest) -> Path:
    """A home per test: PostgreSQL runs as another user when tests run as root, so not under
    pytest's 0700 tmp root."""
    return server_dir / f"make-dev-{request.node.name.replace('[', '-').strip(']')}"


@pytest.fixture
def make_dev(dev_home: Path) -> Iterator[MakeDev]:
    run = MakeDev(dev_home)
    yield run
    run.kill()


async def start_backup(run: MakeDev, *, verify_restore: bool) -> object:
    settings = run.settings()
    client = await connect_with(settings)
    request = ExportRequest(project_id="acme", verify_restore=verify_restore)
    return await start_export(client, settings, request)


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm-group", "ctrl-c-group"]
)
def test_idle_stack_stops(make_dev: MakeDev, sig: int) -> None:
    seen = make_dev.processes()
    assert any("temporal" in " ".join(_cmdline(p)) for p in seen)  # the stack is all there
    make_dev.signal_group(sig)
    make_dev.assert_nothing_left(seen)
    assert "stack stopped" in make_dev.log()  # it stopped itself, in order


def test_sigterm_to_make_alone_stops_everything(make_dev: MakeDev) -> None:
    """`kill <make's pid>`: make forwards SIGTERM to the stack and waits for it."""
    seen = make_dev.processes()
    make_dev.make.send_signal(signal.SIGTERM)
    make_dev.assert_nothing_left(seen)
    assert "stack stopped" in make_dev.log()


async def test_during_a_backup(make_dev: MakeDev) -> None:
    """Stopped while pg_dump (or the verifying restore) runs under the worker."""
    handle = await start_backup(make_dev, verify_restore=True)
    tools = {"pg_dump", "pg_restore", "psql"}
    deadline = time.monotonic() + 60
    while not any(p.name() in tools for p in make_dev.processes() if _alive(p)):
        assert time.monotonic() < deadline, "no pg_dump or pg_restore ever ran"
        await asyncio.sleep(0.02)
    seen = make_dev.processes()
    described = await handle.describe()  # type: ignore[attr-defined]
    assert described.status.name == "RUNNING"
    make_dev.signal_group(signal.SIGTERM)
    await asyncio.to_thread(make_dev.assert_nothing_left, seen)
    assert "stack stopped" in make_dev.log()


async def test_right_after_a_backup(make_dev: MakeDev) -> None:
    handle = await start_backup(make_dev, verify_restore=False)
    result = await asyncio.wait_for(handle.result(), timeout=120)  # type: ignore[attr-defined]
    assert result.size_bytes > 0
    seen = make_dev.processes()
    make_dev.signal_group(signal.SIGTERM)
    await asyncio.to_thread(make_dev.assert_nothing_left, seen)
    assert "stack stopped" in make_dev.log()


def test_make_demo_stopped_during_its_backup(dev_home: Path) -> None:
    run = MakeDev(dev_home, target="demo", ready="backing up project")
    try:
        seen = run.processes()
        run.signal_group(signal.SIGINT)
        run.assert_nothing_left(seen)
        assert "stack stopped" in run.log() and "restore check" not in run.log()
    finally:
        run.kill()


def test_twice_in_a_row(make_dev: MakeDev) -> None:
    """A second Ctrl-C while it is stopping must not cut the stop short."""
    seen = make_dev.processes()
    make_dev.signal_group(signal.SIGINT)
    time.sleep(0.3)
    make_dev.signal_group(signal.SIGINT)
    make_dev.signal_group(signal.SIGTERM)
    make_dev.assert_nothing_left(seen)
    assert "already stopping" in make_dev.log()
    assert "stack stopped" in make_dev.log()


def test_sigkill_of_make_alone_stops_the_stack_in_order(make_dev: MakeDev) -> None:
    seen = make_dev.processes()
    make_dev.make.kill()
    make_dev.assert_nothing_left(seen)
    assert "stack stopped" in make_dev.log()  # the stack got SIGTERM when make died


@pytest.mark.parametrize("target", ["group", "stack"])
def test_sigkill_takes_the_servers_along(make_dev: MakeDev, target: str) -> None:
    """An OOM kill of the stack (or of the whole job) gives it no chance to stop anything: its
    servers go because the kernel tells them their parent died."""
    seen = make_dev.processes()
    if target == "group":
        make_dev.signal_group(signal.SIGKILL)
    else:
        make_dev.stack().kill()
    make_dev.assert_nothing_left(seen)
    assert "stack stopped" not in make_dev.log()  # it really had no chance


def test_next_start_stops_a_leftover_postgres(dev_home: Path) -> None:
    """A PostgreSQL running in the home without a stack (left by an older version, or started
    by hand) is reported and stopped, not silently adopted."""
    leftover = PostgresServer(dev_home / "pg")
    # Started from a thread (so without a parent-death signal) of a process that then exits
    # without stopping it: an orphan, like the pg_ctl-started servers of older versions.
    orphan_maker = (
        "import os, threading, sys; from devstack.postgres import PostgresServer; "
        "t = threading.Thread(target=PostgresServer(sys.argv[1]).start); t.start(); t.join(); "
        "os._exit(0)"
    )
    subprocess.run(
        [sys.executable, "-c", orphan_maker, str(leftover.data_dir)], check=True, cwd=ROOT
    )
    assert leftover.is_running()
    run = MakeDev(dev_home)
    try:
        assert "stopping the PostgreSQL an earlier stack left running" in run.log()
        postmasters = [p for p in run.processes() if p.name() == "postgres"]
        assert postmasters, "the stack runs its own PostgreSQL"
        seen = run.processes()
        run.signal_group(signal.SIGTERM)
        run.assert_nothing_left(seen)
    finally:
        run.kill()


def test_a_second_stack_on_the_same_home_is_refused(tmp_path: Path) -> None:
    held = lock_home(tmp_path)
    try:
        with pytest.raises(
            RuntimeError, match=rf"another dev stack is running .*pid {os.getpid()}"
        ):
            lock_home(tmp_path)
    finally:
        os.close(held)
    os.close(lock_home(tmp_path))  # free again once its holder let go
