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
    existing_schema: str | None = None,
    should_stop: StopCheck = never_stop,
) -> None:
    """`single_transaction`: all of it or nothing (then without parallel jobs).
    `existing_schema`: the dump's schema was created beforehand (to hold an extension
    installed in it), so the dump's own CREATE SCHEMA is skipped."""
    with client_connection(database_url) as client:
        if fmt is DumpFormat.SQL:
            args = [*PSQL, "--file=-"] + (["--single-transaction"] if single_transaction else [])
            proc = start(bin_dir, "psql", args, client, stdin=subprocess.PIPE)
            try:
                names = _quoted(
                    database_url, [fk.name for fk in not_valid] + [existing_schema or ""]
                )
                _feed_sql(dump, proc, names[:-1], existing_schema and names[-1], should_stop)
            finally:
                wait(proc, should_stop)
            return
        args = ["--no-owner", "--no-acl", "--exit-on-error"]
        if single_transaction:
            args.append("--single-transaction")
        elif jobs > 1 and fmt is not DumpFormat.TAR:
            args.append(f"--jobs={jobs}")
        if not_valid or existing_schema:
            toc = output(bin_dir, "pg_restore", ["--list", str(dump)])
            listing = dump.parent / "restore.list"
            listing.write_text(toc_without(toc, not_valid, existing_schema))
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


def toc_without(toc: str, fks: Sequence[OutsideForeignKey], schema: str | None = None) -> str:
    """The table of contents without the entries of `fks` (added NOT VALID afterwards) and
    without the CREATE SCHEMA of `schema`."""
    tags = [f" FK CONSTRAINT {fk.table.replace('.', ' ', 1)} {fk.name} " for fk in fks]
    tags = [tag.replace('"', "") for tag in tags]
    if schema is not None:
        tags.append(f" SCHEMA - {schema} ")
    return "".join(line + "\n" for line in toc.splitlines() if not any(tag in line for tag in tags))


def _quoted(database_url: str, names: list[str]) -> list[str]:
    """As pg_dump quotes names (the server's quote_ident follows the same rules)."""
    with psycopg.connect(database_url) as conn:
        rows = [conn.execute("SELECT quote_ident(%s)", (n,)).fetchone() for n in names]
    return [str(row[0]) for row in rows if row]


def _feed_sql(
    dump: Path,
    proc: subprocess.Popen[bytes],
    fks: Sequence[str],
    schema: str | None,
    should_stop: StopCheck,
) -> None:
    """Stream the script into psql; outside COPY data, `ADD CONSTRAINT <fk> FOREIGN KEY ...;`
    of the `fks` (quoted names) gets NOT VALID, and `CREATE SCHEMA <schema>;` IF NOT EXISTS."""
    assert proc.stdin is not None
    starts = [f"    ADD CONSTRAINT {fk} FOREIGN KEY ".encode() for fk in fks]
    create = f"CREATE SCHEMA {schema};\n".encode() if schema else None
    in_copy = False
    with proc.stdin, dump.open("rb") as script:
        for count, line in enumerate(script):
            if in_copy:
                in_copy = line != COPY_END
            elif COPY_START.match(line):
                in_copy = True
            elif starts and line.endswith(b";\n") and any(map(line.startswith, starts)):
                line = line[:-2] + b" NOT VALID;\n"
            elif line == create:
                line = b"CREATE SCHEMA IF NOT EXISTS" + line[len(b"CREATE SCHEMA") :]
            try:
                proc.stdin.write(line)
            except BrokenPipeError:
                return  # psql stopped: wait() reports why
            if count % LINES_PER_POLL == 0:
                should_stop(count)
