"""Load an unpacked dump into a database with pg_restore (custom, tar, directory) or psql (sql),
stoppable at any time. Foreign keys into tables outside the backup can be loaded NOT VALID: a
scratch database has those tables (from the definitions) but never their rows."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from backup.dependency_models import OutsideForeignKey
from backup.large_objects import parsed
from backup.models import DumpFormat
from backup.pgconn import client_connection
from backup.pgtools import StopCheck, never_stop, output, start, wait
from backup.restore.provide import PSQL

COPY_START = re.compile(rb"^COPY .* FROM stdin;\n$")
COPY_END = b"\\.\n"
LINES_PER_POLL = 10_000


def load(
    dump: Path,
    fmt: DumpFormat,
    database_url: str,
    bin_dir: Path,
    *,
    jobs: int = 1,
    single_transaction: bool = False,
    not_valid: Sequence[OutsideForeignKey] = (),
    should_stop: StopCheck = never_stop,
) -> None:
    """`single_transaction`: all of it or nothing (then without parallel jobs)."""
    with client_connection(database_url) as client:
        if fmt is DumpFormat.SQL:
            args = [*PSQL, "--file=-"] + (["--single-transaction"] if single_transaction else [])
            proc = start(bin_dir, "psql", args, client, stdin=subprocess.PIPE)
            try:
                _feed_sql(dump, proc, not_valid, should_stop)
            finally:
                wait(proc, should_stop)
            return
        args = ["--no-owner", "--no-acl", "--exit-on-error"]
        if single_transaction:
            args.append("--single-transaction")
        elif jobs > 1 and fmt is not DumpFormat.TAR:
            args.append(f"--jobs={jobs}")
        if not_valid:
            listing = dump.parent / "restore.list"
            listing.write_text(
                _without(output(bin_dir, "pg_restore", ["--list", str(dump)]), not_valid)
            )
            args.append(f"--use-list={listing}")
        wait(start(bin_dir, "pg_restore", [*args, str(dump)], client), should_stop)
    if not_valid:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for fk in not_valid:  # the definition is pg_get_constraintdef's, from the manifest
                table = sql.Identifier(*parsed(conn, fk.table))
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(
                        table,
                        sql.Identifier(fk.name),
                        sql.SQL(fk.definition),  # type: ignore[arg-type]
                    )
                )


def _without(toc: str, fks: Sequence[OutsideForeignKey]) -> str:
    """The table of contents without the entries of `fks` (added NOT VALID afterwards)."""
    tags = [f" FK CONSTRAINT {fk.table.replace('.', ' ', 1)} {fk.name} " for fk in fks]
    tags = [tag.replace('"', "") for tag in tags]
    return "".join(line + "\n" for line in toc.splitlines() if not any(tag in line for tag in tags))


def _feed_sql(
    dump: Path,
    proc: subprocess.Popen[bytes],
    fks: Sequence[OutsideForeignKey],
    should_stop: StopCheck,
) -> None:
    """Stream the script into psql; outside COPY data, `ADD CONSTRAINT <fk> FOREIGN KEY ...;`
    of the `fks` gets NOT VALID."""
    assert proc.stdin is not None
    starts = [f"    ADD CONSTRAINT {_ident(fk.name)} FOREIGN KEY ".encode() for fk in fks]
    in_copy = False
    with proc.stdin, dump.open("rb") as script:
        for count, line in enumerate(script):
            if in_copy:
                in_copy = line != COPY_END
            elif COPY_START.match(line):
                in_copy = True
            elif starts and line.endswith(b";\n") and any(map(line.startswith, starts)):
                line = line[:-2] + b" NOT VALID;\n"
            try:
                proc.stdin.write(line)
            except BrokenPipeError:
                return  # psql stopped: wait() reports why
            if count % LINES_PER_POLL == 0:
                should_stop(count)


def _ident(name: str) -> str:
    """As pg_dump quotes a name (only when it must)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'
