"""How the dev stack stops: on the first SIGINT or SIGTERM, wherever it is, and only once.

`make dev` gets its signals twice: a Ctrl-C or `kill` reaches the whole process group, and GNU
make forwards SIGTERM to its child as well. The first signal interrupts whatever the stack is
doing (starting, idle, a demo backup); every later one is only acknowledged, so nothing cuts the
orderly stop short. Handlers (not sigwait) because Python runs them in the main thread whichever
thread the kernel picks, and a SIGTERM left at its default disposition in any thread ends the
process with no stop at all. Servers die with the stack even when it is killed outright
(devstack.process.bound_to_parent); one left by an older version is found by the stack lock.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived. A KeyboardInterrupt, so asyncio lets it through as it does Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGINT/SIGTERM handlers for the main thread: the first raises StopRequested, later ones
    (and any after `stopping` is set) are acknowledged on stderr and change nothing."""

    def __init__(self) -> None:
        self.stopping = False
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            # os.write, not print: the handler may run in the middle of a print.
            os.write(2, f"\n  {signal.Signals(signum).name}: already stopping the stack\n".encode())
            return
        self.stopping = True  # before raising: the stop that follows must not be interrupted
        raise StopRequested(signum)

    def wait(self) -> None:
        """Sleep until a stop signal. The wakeup fd wakes us even when the kernel delivered the
        signal to another thread (pause() would sleep on)."""
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        previous = signal.set_wakeup_fd(write_end)
        try:
            while True:
                select.select([read_end], [], [])
                os.read(read_end, 64)  # the handler has run (and raised) by now, or runs next
        finally:
            signal.set_wakeup_fd(previous)
            os.close(read_end)
            os.close(write_end)


def lock_home(home: Path) -> int:
    """Take `home`'s stack lock for this process's lifetime, or say who holds it. The kernel
    drops the lock when its holder dies, however it dies: a server found running in `home`
    while we hold it was left behind by a stack that is gone."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode().strip() or "?"
        os.close(fd)
        raise RuntimeError(
            f"another dev stack is running from {home} (pid {holder}): stop it first, or use "
            "another --home"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
