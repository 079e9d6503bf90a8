"""Where the dump step's time goes: the dump activity's work (activities/dump.py `_dump`) run
in-process against the bench stack, with CPU seconds per process and per worker thread.

    .venv/bin/python -m bench.dump_profile [--size 1000] [--runs 1] [--config NAME=K=V,K=V ...]

Each configuration is a set of worker settings (ROW_COUNTS=stream, ZSTD_LEVEL=1, ...), run back
to back on the same schema, so their rows compare under the same load. Per run it prints wall
seconds, artifact size, and CPU seconds of: the dump's thread (pg_dump's pipe → zstd → hash →
spool file, row counting), libzstd's workers, the event loop (S3 requests, botocore signing), the
hashing threads, pg_dump, each PostgreSQL backend by what it ran (COPY, count(*)), SeaweedFS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psutil

from activities.dump import DumpActivities
from activities.support import ByteProgress
from backup.models import Compression, DumpFormat, DumpSpec, Project
from backup.settings import Settings
from backup.spool import remove_run
from backup.storage.s3_loop import background_loop
from bench.schema import ensure_tenant, register_bench_project
from bench.stack import BenchStack
from bench.stack_cpu import postmaster_pid, tree_seconds

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.05
# What a backend is named by, busiest first: pg_dump's runs SELECTs, then COPY.
WORK = {"COPY": 3, "SELECT": 2, "idle in transaction": 1}
DEFAULT_CONFIGS = {
    "default": {},
    "stream counts": {"ROW_COUNTS": "stream"},
}


class _Progress:
    """ByteProgress without an activity: never cancelled."""

    step = "dumping"
    done = 0

    def update(self, done: int) -> None:
        self.done = done


def _thread_cpu() -> dict[int, float]:
    seconds = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def _backend_kind(cmdline: list[str]) -> str:
    title = " ".join(cmdline)
    for kind in ("COPY", "SELECT", "idle in transaction", "idle"):
        if kind in title:
            return kind
    return title.split(" ", 1)[-1][:40] if title else "?"


@dataclass
class Sampler:
    """Samples, every 50 ms, the worker's threads and the postmaster's backends, keeping each
    one's last CPU figure (a thread or backend that exits keeps what it had spent)."""

    postmaster: int
    threads: dict[int, float] = field(default_factory=dict)
    backends: dict[int, tuple[str, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        self.threads.update(_thread_cpu())
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(self.postmaster).children():
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    kind = _backend_kind(proc.cmdline())
                    old = self.backends.get(proc.pid, ("", 0.0))[0]
                    # A backend's title changes as it works: name it by what it ran.
                    if WORK.get(old, 0) > WORK.get(kind, 0):
                        kind = old
                    self.backends[proc.pid] = (kind, t.user + t.system)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    @contextlib.contextmanager
    def running(self) -> Iterator[Sampler]:
        self._sample()
        start_threads = dict(self.threads)
        start_backends = dict(self.backends)
        thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._sample()
            self.threads = {t: s - start_threads.get(t, 0.0) for t, s in self.threads.items()}
            before = {p: s for p, (_, s) in start_backends.items()}
            self.backends = {p: (k, s - before.get(p, 0.0)) for p, (k, s) in self.backends.items()}


@dataclass
class Profile:
    label: str
    wall: float
    size_bytes: int
    raw_bytes: int
    cpu: dict[str, float]

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.cpu.items() if v >= 0.005)
        total = sum(self.cpu.values())
        return (
            f"| {self.label} | {self.wall:.2f} | {self.size_bytes / 1e6:.1f} | "
            f"{total:.2f} | {parts} |"
        )


def _names(dump_tid: int, loop_tid: int) -> dict[int, str]:
    names = {dump_tid: "dump thread", loop_tid: "event loop"}
    for thread in threading.enumerate():
        if thread.native_id and thread.native_id not in names:
            names[thread.native_id] = thread.name.split("_")[0]
    return names


def profile_once(stack: BenchStack, schema: str, label: str, overrides: dict[str, str]) -> Profile:
    env = {**stack.env, "STORAGE_BACKEND": "s3", **overrides}
    settings = Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    run_key = f"profile-{uuid.uuid4().hex[:12]}"
    spec = DumpSpec(
        project=Project(project_id=schema, name=schema, schema_name=schema),
        format=DumpFormat.CUSTOM,
        compression=Compression.ZSTD,
        run_key=run_key,
        key_stem=f"backups/{schema}/{run_key}",
    )
    loop = background_loop()
    loop_tid = asyncio.run_coroutine_threadsafe(_native_id(), loop).result()
    assert stack.s3 is not None and stack.s3.pid is not None
    weed = psutil.Process(stack.s3.pid)
    sampler = Sampler(postmaster_pid(stack.postgres.data_dir))
    result: dict[str, Any] = {}

    def work() -> None:
        result["tid"] = threading.get_native_id()
        progress = cast(ByteProgress, _Progress())
        result["outcome"] = DumpActivities(settings)._dump(spec, loop, progress)

    postmaster = postmaster_pid(stack.postgres.data_dir)
    pg_before = tree_seconds(postmaster)
    weed_before = sum(weed.cpu_times()[:2])
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with sampler.running():
        started = time.perf_counter()
        thread = threading.Thread(target=work, name="dump")
        thread.start()
        thread.join()
        wall = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = result["outcome"]
    names = _names(result["tid"], loop_tid)
    cpu: dict[str, float] = defaultdict(float)
    for tid, seconds in sampler.threads.items():
        cpu[f"worker {names.get(tid, 'zstd/other')}"] += seconds
    cpu["pg_dump"] = (children.ru_utime + children.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    for kind, seconds in sampler.backends.values():
        cpu[f"postgres {' '.join(kind.split())}"] += seconds
    sampled = sum(s for _, s in sampler.backends.values())
    cpu["postgres other (exited, unsampled)"] = tree_seconds(postmaster) - pg_before - sampled
    cpu["seaweedfs"] = sum(weed.cpu_times()[:2]) - weed_before
    _abort_upload(settings, run_key)
    remove_run(settings.spool_dir, run_key)
    m = outcome.manifest
    return Profile(label, wall, m.size_bytes, m.raw_bytes, dict(cpu))


async def _native_id() -> int:
    return threading.get_native_id()


def _abort_upload(settings: Settings, run_key: str) -> None:
    """The parts the dump sent stay unfinished: abort them (the workflow's upload would finish
    them)."""
    from backup.spool import UPLOAD_JOURNAL
    from backup.storage import open_storage
    from backup.storage.s3 import S3Storage
    from backup.storage.s3_stream import abort_journaled

    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    abort_journaled(storage, settings.spool_dir / run_key / UPLOAD_JOURNAL)


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    name, _, pairs = text.partition("=")
    return name, dict(p.split("=", 1) for p in pairs.split(",") if p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=float, default=1000.0, help="relation size in MB")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--home", type=Path, default=ROOT / ".dev" / "bench")
    parser.add_argument(
        "--config",
        action="append",
        type=parse_config,
        metavar="NAME=K=V,K=V",
        help="a configuration to profile (repeatable; default: default and stream counts)",
    )
    args = parser.parse_args(argv)
    configs = dict(args.config) if args.config else DEFAULT_CONFIGS
    os.chdir(ROOT)
    schema = f"bench_{args.size:g}mb".replace(".", "_")
    with BenchStack(args.home) as stack:
        url = stack.postgres.url()
        relation = ensure_tenant(url, schema, args.size)
        register_bench_project(url, schema, schema)
        for name, value in stack.env.items():
            if name.startswith("AWS_"):
                os.environ[name] = value
        print(f"schema {schema}: {relation / 1e6:.0f} MB; load {os.getloadavg()}")
        print("| config | wall s | artifact MB | CPU s total | CPU s by process and thread |")
        print("|---|---:|---:|---:|---|")
        profile_once(stack, schema, "warm-up", {})  # page cache, imports, S3 client
        for run in range(args.runs):
            for label, overrides in configs.items():
                p = profile_once(stack, schema, label, overrides)
                print(p.line(), flush=True)
            print(f"load after round {run + 1}: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
