"""A pg_dump (or pg_restore) process: started with the client connection's environment and
file descriptors (never a password in argv), its stderr kept for the error, stopped for sure."""

from __future__ import annotations

import os
import subprocess
import tempfile

from backup.errors import DumpFailed
from backup.pgconn import ClientConnection


def start(client: ClientConnection, args: list[str], stdout: int | None) -> subprocess.Popen[bytes]:
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (owned by proc, closed in stop)
    proc = subprocess.Popen(
        args,
        stdout=stdout,
        stderr=errors,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **client.env},
        pass_fds=client.pass_fds,
    )
    # Popen keeps no handle on a file it was given: keep it for finish's error message.
    proc.stderr = errors
    return proc


def finish(proc: subprocess.Popen[bytes]) -> None:
    """Wait for pg_dump; a non-zero exit becomes DumpFailed with the tail of its stderr."""
    code = proc.wait()
    if code != 0:
        assert proc.stderr is not None
        proc.stderr.seek(0)
        tail = proc.stderr.read()[-2000:].decode(errors="replace").strip()
        raise DumpFailed(f"pg_dump exited with code {code}: {tail}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def exited_within(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True
