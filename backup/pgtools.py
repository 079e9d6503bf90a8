"""Run pg_dump, pg_restore and psql so that they can be stopped: the caller's progress callback
is polled while they run and may raise (cancellation), which kills the process at once."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from backup.errors import ToolFailed
from backup.pgconn import ClientConnection

# Called while a tool runs (with a byte count where one is known); raising stops the tool.
StopCheck = Callable[[int], None]
POLL_SECONDS = 0.2


def never_stop(_: int) -> None:
    return None


def start(
    bin_dir: Path,
    tool: str,
    args: list[str],
    client: ClientConnection,
    *,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start `tool` with `--dbname` of `client` (password in the environment, never argv);
    its stderr goes to a temporary file that `wait` reads for the error message."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in wait)
    proc = subprocess.Popen(
        [str(bin_dir / tool), *args, f"--dbname={client.conninfo}"],
        stdin=stdin,
        stdout=stdout,
        stderr=errors,
        env={**os.environ, **client.env},
        pass_fds=client.pass_fds,
    )
    proc.stderr = errors
    return proc


def wait(proc: subprocess.Popen[bytes], should_stop: StopCheck = never_stop) -> None:
    """Wait for `proc`, polling `should_stop`; a non-zero exit raises ToolFailed."""
    try:
        while True:
            should_stop(0)  # first right away: a cancelled restore starts nothing more
            try:
                code = proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    proc.stderr.seek(0)
    tail = proc.stderr.read()[-2000:].decode(errors="replace").strip()
    proc.stderr.close()
    if code != 0:
        name = Path(str(proc.args[0])).name  # type: ignore[index]
        raise ToolFailed(f"{name} failed: {tail}")


def run(
    bin_dir: Path,
    tool: str,
    args: list[str],
    client: ClientConnection,
    should_stop: StopCheck = never_stop,
) -> None:
    wait(start(bin_dir, tool, args, client), should_stop)


def output(
    bin_dir: Path, tool: str, args: list[str], client: ClientConnection | None = None
) -> str:
    """Short runs whose stdout is the answer (pg_restore --list, pg_restore -f -)."""
    done = subprocess.run(
        [str(bin_dir / tool), *args, *([f"--dbname={client.conninfo}"] if client else [])],
        capture_output=True,
        env={**os.environ, **(client.env if client else {})},
        pass_fds=client.pass_fds if client else (),
    )
    if done.returncode != 0:
        raise ToolFailed(f"{tool} failed: {done.stderr.decode(errors='replace').strip()[-2000:]}")
    return done.stdout.decode()
