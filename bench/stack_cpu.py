"""CPU seconds each process of the stack spent over a run: where a tiny backup's cost goes
beyond the worker (the Temporal dev server, PostgreSQL, SeaweedFS).

Each part is a root process with its descendants; children that have exited and been reaped
(pg_dump, PostgreSQL backends) count through the root's `children_*` times.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil


def tree_seconds(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
            if proc is root:  # reaped descendants (a live child's own reaped ones are its)
                total += t.children_user + t.children_system
    return total


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


class StackCpu:
    """`with StackCpu({"worker": pid, ...}) as cpu:` ... then `cpu.seconds[name]`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> StackCpu:
        self._start = {name: tree_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = {
            name: tree_seconds(pid) - self._start[name] for name, pid in self.pids.items()
        }

    def per_backup_ms(self, count: int) -> str:
        """One line: milliseconds of CPU per backup for each part of the stack."""
        parts = [f"{name} {s / count * 1000:.0f} ms" for name, s in self.seconds.items()]
        total = sum(self.seconds.values()) / count * 1000
        return ", ".join(parts) + f" (total {total:.0f} ms)"
