"""The crash matrix (issue 7): SIGKILL (and SIGTERM) a real worker in every step of a backup,
restart it on the same host and on another, and check what the backup left behind.

    .venv/bin/python reliability/crash_matrix.py                 # every cell, both hosts
    .venv/bin/python reliability/crash_matrix.py --cell verify --host same

Starts its own dev stack (PostgreSQL, Temporal, SeaweedFS, SMTP, webhooks) in a temporary
directory, prints a table and writes reliability/results/crash_matrix.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: reliability/crash_matrix.py
    sys.path.insert(0, str(ROOT))

from devstack.stack import DevStack  # noqa: E402
from reliability import harness  # noqa: E402
from reliability.crashes import CELLS, HOSTS, Matrix, Row, seed_project  # noqa: E402
from reliability.crashy_worker import describe_shortening  # noqa: E402
from reliability.harness import own_stack, text_table, write_json  # noqa: E402

RESULTS = harness.RESULTS / "crash_matrix.json"


async def run_matrix(
    stack: DevStack, workdir: Path, cells: list[str], hosts: list[str]
) -> list[Row]:
    matrix = Matrix(stack, workdir)
    rows = []
    for c in CELLS:
        for host in HOSTS:
            if c.name in cells and host in hosts:
                row = await matrix.run(c, host)
                print(
                    f"  {'PASS' if row.passed else 'FAIL'} {row.cell} / {row.host} "
                    f"({row.seconds:.0f} s): {row.detail}",
                    flush=True,
                )
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [c.name for c in CELLS]
    parser.add_argument("--cell", action="append", choices=names, help="default: every cell")
    parser.add_argument("--host", action="append", choices=list(HOSTS), help="default: both")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep logs and spools (prints where)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"timeouts shortened in the harness worker: {describe_shortening()}")
    cells, hosts = args.cell or names, args.host or list(HOSTS)
    keep = tempfile.mkdtemp(prefix="crash-matrix-") if args.keep else None
    with (
        contextlib.nullcontext(keep)
        if keep
        else tempfile.TemporaryDirectory(prefix="crash-matrix-") as home
    ):
        stack = own_stack(Path(home) / "stack", storage="s3")
        with stack:
            seed_project(stack.postgres.url())
            rows = asyncio.run(run_matrix(stack, Path(home) / "cells", cells, hosts))
    write_json(rows, args.out)
    print(text_table(rows, ["cell", "host", "passed", "seconds", "detail"]))
    if keep:
        print(f"logs, events and spools kept in {keep}")
    passed = sum(r.passed for r in rows)
    print(f"\n{passed}/{len(rows)} cells passed in {time.monotonic() - started:.0f} s; {args.out}")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
