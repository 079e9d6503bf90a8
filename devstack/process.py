"""What every dev-stack server shares: a context manager around start/stop, stopping a child
process politely, then firmly, and children that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child must not load it


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bound_to_parent(on_parent_death: int = signal.SIGTERM) -> dict[str, Any]:
    """Popen options for a server that must not outlive this process, even on SIGKILL: the
    kernel sends it `on_parent_death` when we die (PR_SET_PDEATHSIG), and it runs in its own
    session, so a Ctrl-C or a signal to our process group reaches only us, and we stop the
    servers in order (the worker before Temporal and PostgreSQL).

    The kernel sends that signal when the *thread* that started the child ends, so only the main
    thread binds its children; from any other thread this returns no options."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    parent = os.getpid()

    def in_child() -> None:  # after fork, after any setuid (which would clear the setting)
        _libc.prctl(PR_SET_PDEATHSIG, on_parent_death)
        if os.getppid() != parent:  # we died before prctl took effect
            os.kill(os.getpid(), on_parent_death)

    preexec: Callable[[], None] = in_child
    return {"preexec_fn": preexec, "start_new_session": True}


def spawn_logged(args: list[str], log_file: Path, **options: Any) -> subprocess.Popen[bytes]:
    """A server process bound to this one (bound_to_parent), appending its stdout and stderr to
    `log_file`, with no stdin; `options` go to Popen."""
    with log_file.open("ab") as log:
        return subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **options,
            **bound_to_parent(),
        )


def signal_me_when_parent_dies(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send this process `signum` when its parent (make, a shell) dies, so a
    `make dev` whose make was killed still stops its stack, in order."""
    parent = os.getppid()
    _libc.prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signum)


class Service:
    """`with Server(...) as s:` starts it and always stops it. `_proc` is the server process
    start() spawned, None while it is not running."""

    _proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the process start() spawned, politely, then firmly; a stopped one is left."""
        if self._proc is None:
            return
        stop_process(self._proc)
        self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
