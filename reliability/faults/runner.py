"""Run the scenarios against one stack of their own: a row each, the table, results/faults.json."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.stack import DevStack
from reliability.faults.scenarios import SCENARIOS
from reliability.faults.staging import NotRunnable, fault_stack
from reliability.harness import RESULTS, text_table, write_json


@dataclass
class Row:
    fault: str
    passed: bool
    detail: str
    seconds: float


async def run_one(name: str, stack: DevStack, work: Path) -> Row:
    scenario, _ = SCENARIOS[name]
    started = time.monotonic()
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    try:
        detail, passed = await scenario(stack, folder), True
    except NotRunnable as err:
        detail, passed = f"not run: {err}", False
    except Exception as err:  # a scenario's failure is a row of the table, not the end
        detail, passed = f"{type(err).__name__}: {err}"[:500], False
    return Row(name, passed, detail, round(time.monotonic() - started, 1))


async def run(names: list[str], stack: DevStack, work: Path) -> list[Row]:
    rows = []
    for name in names:
        print(f"  fault {name} ...", flush=True)
        rows.append(row := await run_one(name, stack, work))
        print(f"    {'pass' if row.passed else 'FAIL'} ({row.seconds} s) {row.detail}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reliability.faults", description="Fault injection against the real servers."
    )
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), help="repeatable")
    parser.add_argument("--fast", action="store_true", help="only the scenarios CI runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "faults.json")
    args = parser.parse_args(argv)
    names = args.only or [n for n, (_, fast) in SCENARIOS.items() if fast or not args.fast]
    # Not under /tmp/pytest-*: PostgreSQL runs as another user and needs to reach its data dir.
    home = Path(tempfile.mkdtemp(prefix="export-backup-faults-"))
    try:
        # The stack starts outside the event loop: it seeds the tenants with asyncio.run.
        with fault_stack(home / "stack") as stack:
            rows = asyncio.run(run(names, stack, home / "work"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(text_table(rows, ["fault", "passed", "seconds", "detail"]))
    print(f"\nwritten to {write_json(rows, args.out)}")
    return 0 if all(r.passed for r in rows) else 1
