"""`make bench`: this project's full ExportBackupWorkflow against what peers run, side by side
on the same generated tenant schemas (custom format against `pg_dump -Fc`, directory format
against `pg_dump -Fd -j`), then 100 tiny backups at once (bench/many_small.py) and one fleet
backup of 300 tiny tenants (bench/fleet_speed.py), both beside the same peer loops.

    .venv/bin/python -m bench [--quick] [--sizes 100,500,1000] [--runs 1] [--no-many-small]
                              [--fleet-count 300] [--no-fleet] [--no-restore] [--no-encrypted]

Just the 1 GB rows, beside their peers: `--sizes 1000 --no-many-small --no-fleet --no-restore`.

Writes bench/results.md and bench/results.png. Security (age encryption, signed manifests) is
off for the comparison, since peers do neither; one encrypted run on the largest size is added.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from backup.keys import generate_keys
from backup.models import DumpFormat
from backup.settings import Settings
from bench import baselines, restore_speed
from bench.fleet_speed import FleetSpeed, measure_peers, run_fleet
from bench.machine import LoadSampler, machine
from bench.many_small import LIMITS, ManySmall, run_many_small
from bench.report import ENCRYPTED, Row, plot, small_targets, steps_table, table, targets
from bench.schema import ensure_tenant, register_bench_project, settle
from bench.stack import BenchStack, BenchWorker, WorkflowRun

ROOT = Path(__file__).resolve().parent.parent
FULL_SIZES = (100.0, 500.0, 1000.0)
QUICK_SIZES = (10.0, 30.0, 60.0)
TARGET_RUNS = 3
R = TypeVar("R", ManySmall, FleetSpeed)


def target_runs(args: argparse.Namespace) -> int:
    """Runs of what the targets are read on: at least TARGET_RUNS (QUICK=1: as asked), since
    the same run swings ±15 % on this box."""
    return args.runs if args.quick else max(args.runs, TARGET_RUNS)


async def ours(
    stack: BenchStack,
    project: str,
    size_mb: float,
    label: str,
    env: dict[str, str],
    fmt: DumpFormat = DumpFormat.CUSTOM,
) -> Row:
    """One backup on a fresh worker (warmed up first), so its VmHWM is this backup's peak."""
    with BenchWorker(stack, env).running() as worker:
        await worker.backup("acme")  # warm-up: sandbox, imports, connections
        run: WorkflowRun = await worker.backup(project, fmt)
    return Row(
        size_mb, label, run.seconds, run.size_bytes, run.worker_hwm, run.tree_peak, run.steps
    )


def median_row(rounds: list[Row]) -> Row:
    """One method's row over the rounds: the median time, the highest memory."""
    row = dataclasses.replace(sorted(rounds, key=lambda r: r.seconds)[len(rounds) // 2])
    hwms = [r.worker_hwm for r in rounds if r.worker_hwm is not None]
    peaks = [r.tree_peak for r in rounds if r.tree_peak is not None]
    row.worker_hwm, row.tree_peak = max(hwms, default=None), max(peaks, default=None)
    return row


def peers(stack: BenchStack, schema: str, size: float, jobs: int) -> list[Row]:
    """Baselines A, B and D and the floor, one whole-process timing each."""
    assert stack.s3 is not None
    s3 = stack.s3
    out = stack.home / "baseline" / f"{schema}.dump"
    out.parent.mkdir(exist_ok=True)
    a = baselines.baseline_a(stack.postgres, schema, out)
    out.unlink()
    # A new key each run: an overwritten object is garbage SeaweedFS compacts later, meanwhile.
    key = f"baseline/{schema}-{uuid.uuid4().hex[:8]}.dump"
    b = baselines.baseline_b(stack.postgres, schema, s3, key)
    f = baselines.floor(stack.postgres, schema)
    folder = out.with_suffix(".dir")
    d = baselines.baseline_d(stack.postgres, schema, folder, jobs)
    shutil.rmtree(folder)
    return [
        Row(size, "A pg_dump -Fc -f", a.seconds, a.size_bytes),
        Row(size, "B pg_dump -Fc piped to S3 upload", b.seconds, b.size_bytes),
        Row(size, "floor pg_dump -Fc -Z0 >/dev/null", f.seconds),
        Row(size, f"D pg_dump -Fd -j {jobs} -f dir", d.seconds, d.size_bytes),
    ]


async def compare(stack: BenchStack, args: argparse.Namespace, tuning: dict[str, str]) -> list[Row]:
    url = stack.postgres.url()
    assert stack.s3 is not None
    schemas = {}
    for target in args.sizes:
        schema = f"bench_{target:g}mb".replace(".", "_")
        started = time.monotonic()
        relation = ensure_tenant(url, schema, target)
        register_bench_project(url, schema, schema)
        schemas[schema] = relation / 1e6
        print(f"  schema {schema}: {relation / 1e6:.0f} MB ({time.monotonic() - started:.0f} s)")
    jobs = int(tuning.get("DUMP_JOBS", Settings.model_fields["dump_jobs"].default))
    rows: list[Row] = []
    encrypted: list[Row] = []
    largest = list(schemas)[-1]
    for schema, size in schemas.items():
        # The targets are read on the largest size: there every row is a median.
        runs = target_runs(args) if schema == largest else args.runs
        # In rounds, each of them every method once (peers, then ours): the box's speed drifts
        # over minutes, and a round keeps A and ours within a minute of each other.
        rounds = []
        for _ in range(runs):
            settle(url)
            one = peers(stack, schema, size, jobs)
            for backend in ("local", "s3"):
                env = {"STORAGE_BACKEND": backend, **tuning}
                one.append(await ours(stack, schema, size, f"ours → {backend}", env))
            if schema == largest and args.encrypted:  # right after its plain twin
                if not stack.keys.exist():
                    generate_keys(stack.keys.folder)
                stack.encrypted = True
                env = {"STORAGE_BACKEND": "s3", **tuning}
                one.append(await ours(stack, schema, size, ENCRYPTED, env))
                stack.encrypted = False
            # The parallel directory format (pg_dump -Fd -j DUMP_JOBS, stored as one tar).
            env = {"STORAGE_BACKEND": "s3", **tuning}
            label = f"ours → s3, directory -j {jobs}"
            one.append(await ours(stack, schema, size, label, env, DumpFormat.DIRECTORY))
            rounds.append(one)
        medians = [median_row([r[i] for r in rounds]) for i in range(len(rounds[0]))]
        rows += [r for r in medians if r.method != ENCRYPTED]
        encrypted += [r for r in medians if r.method == ENCRYPTED]
        print(table([r for r in rows + encrypted if r.size_mb == size]))
    rows += encrypted
    return rows


def write_results(
    path: Path,
    rows: list[Row],
    small: ManySmall | None,
    fleet: FleetSpeed | None,
    load: LoadSampler,
    tuning: dict[str, str],
    args: argparse.Namespace,
) -> None:
    worker = ", ".join(f"{k}={v}" for k, v in tuning.items()) or "defaults"
    text = [
        "# Benchmark results\n",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
        f"`make bench{' QUICK=1' if args.quick else ''}`"
        f" (median of {args.runs}"
        + ("" if args.quick else f", of {target_runs(args)} at the largest size and tiny phases")
        + f"); machine: {machine()}.\n",
        f"Load during the run ({load.summary()}): other work shared the cores, so absolute times "
        "are pessimistic; the rows of one size were measured in rounds, each method once a round, "
        "so drift in the box's speed reaches A and ours alike.\n",
        f"Worker settings: {worker}; encryption and signing off except where the row says so.\n",
        "Worker peak RSS is the kernel's VmHWM of the worker process (a fresh worker per size and "
        "backend, warmed up with one tiny backup); the last column adds pg_dump and other "
        "children, sampled every 0.1 s with psutil.\n",
        table(rows),
        "\n## Targets\n",
        targets(rows),
        "\nWhere the workflow's time goes (seconds per activity, scheduled to completed):\n",
        steps_table(rows),
        "\n![time and memory vs size](results.png)\n",
        "Profiles, earlier runs and what they changed: [findings.md](findings.md).\n",
    ]
    if small is not None:
        text += ["\n## Many small projects\n", small.markdown()]
    if fleet is not None:
        text += ["\n## Fleet backup\n", fleet.markdown()]
    if small is not None or fleet is not None:
        text += ["\n## Targets for tiny tenants\n", tiny_targets(small, fleet)]
    path.write_text("\n".join(text))


def tiny_targets(small: ManySmall | None, fleet: FleetSpeed | None) -> str:
    return small_targets(
        small.per_second if small else None,
        small.p95 if small else None,
        fleet.per_second if fleet else None,
    )


async def measure(
    stack: BenchStack, args: argparse.Namespace, tuning: dict[str, str]
) -> tuple[list[Row], ManySmall | None, FleetSpeed | None]:
    rows = await compare(stack, args, tuning) if args.sizes else []
    runs = target_runs(args)  # the tiny phases' targets are read on medians too
    small = None
    if args.many_small:
        tries = [await run_many_small(stack, args.small_count, tuning, False) for _ in range(runs)]
        small = median_run(tries, lambda r: r.per_second)
        concurrency = int({**LIMITS, **tuning}["MAX_CONCURRENT_DUMPS"])
        small.peers = measure_peers(stack, args.small_count, concurrency)
        # scale-out: the same tenants on two worker processes (HOST_IDs)
        small.scale_out = await run_many_small(stack, args.small_count, tuning, False, workers=2)
    fleet = None
    if args.fleet_count:  # beside the peer loops of the many-small run (same tenant shape)
        fleets = [await run_fleet(stack, args.fleet_count, tuning) for _ in range(runs)]
        fleet = median_run(fleets, lambda r: r.per_second)
        fleet.peers = small.peers if small is not None else []
    return rows, small, fleet


def median_run(runs: list[R], rate: Callable[[R], float]) -> R:
    """The run of median rate, knowing the rates of all (shown beside it); but a run that
    lost a backup or leaked is the one shown, whatever its rate: a failure is never hidden."""
    failed = [r for r in runs if not r.ok]
    shown = failed[0] if failed else sorted(runs, key=rate)[len(runs) // 2]
    shown.rates = [rate(r) for r in runs]
    return shown


def run(args: argparse.Namespace) -> int:
    tuning = dict(item.split("=", 1) for item in args.worker_env)
    load = LoadSampler()
    # The stack starts outside the event loop: its seeding runs a loop of its own.
    with BenchStack(args.home) as stack, load:
        rows, small, fleet = asyncio.run(measure(stack, args, tuning))
        if args.restore:
            sizes = restore_speed.QUICK_SIZES if args.quick else restore_speed.FULL_SIZES
            restore_speed.write(restore_speed.measure(stack.postgres, sizes), args.quick)
    print(table(rows))
    print(targets(rows))
    print(steps_table(rows))
    if small:
        print(small.markdown())
    if fleet:
        print(fleet.markdown())
    if small or fleet:
        print(tiny_targets(small, fleet))
    print(load.summary())
    if rows:
        plot(rows, args.results.with_suffix(".png"))
        raw = [dataclasses.asdict(r) for r in rows]
        args.results.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    write_results(args.results, rows, small, fleet, load, tuning, args)
    print(f"wrote {args.results} and {args.results.with_suffix('.png')}")
    ok = (small is None or small.ok) and (fleet is None or fleet.ok)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} MB")
    parser.add_argument(
        "--sizes",
        type=lambda s: [float(x) for x in s.split(",") if x],
        help="relation sizes in MB, comma-separated (empty: skip)",
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--home", type=Path, default=ROOT / ".dev" / "bench")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument("--no-many-small", dest="many_small", action="store_false")
    parser.add_argument("--small-count", type=int, default=100)
    parser.add_argument("--fleet-count", type=int, default=300, help="fleet tenants (0: skip)")
    parser.add_argument("--no-fleet", dest="fleet_count", action="store_const", const=0)
    parser.add_argument("--no-encrypted", dest="encrypted", action="store_false")
    parser.add_argument(
        "--no-restore", dest="restore", action="store_false", help="skip bench/restore_speed.md"
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting for our runs (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
    os.chdir(ROOT)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
