"""What the numbers were measured on: cores, RAM, and the load while they were taken.

Other work on a small box distorts wall times, so a LoadSampler records os.getloadavg() every
second of the run, and PeakRss samples a process tree's resident memory.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import threading
from pathlib import Path
from typing import Self

import psutil


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram = psutil.virtual_memory().total / 1024**3
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {ram:.0f} GiB RAM, {system}"


class Sampler:
    """Calls `sample()` every `interval` seconds on a daemon thread between start and stop."""

    interval = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class LoadSampler(Sampler):
    """1-minute load average over the run: what else was competing for the cores."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []

    def sample(self) -> None:
        self.values.append(os.getloadavg()[0])

    def summary(self) -> str:
        if not self.values:
            return "-"
        return (
            f"1-min load average min {min(self.values):.2f}, mean "
            f"{statistics.mean(self.values):.2f}, max {max(self.values):.2f}"
        )


class PeakRss(Sampler):
    """Peak of the summed RSS of a process and its descendants (pg_dump included), sampled."""

    interval = 0.1

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        self.peak = 0

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                # A child still named like the worker is a fork before exec: it shares the
                # worker's pages and would count them twice.
                if proc is root or proc.name() != root.name():
                    total += proc.memory_info().rss
        self.peak = max(self.peak, total)


def vm_hwm(pid: int) -> int:
    """The kernel's exact peak RSS (VmHWM) of one process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")
