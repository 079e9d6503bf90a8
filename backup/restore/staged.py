"""A copy under a new name, at the speed of a plain parallel pg_restore. pg_restore can only
recreate a schema under its own name, so:

1. the structure alone (no rows) is restored into a scratch database, renamed to a staging
   name there and its text fixed for the new name (rename.py), then dumped again: DDL that
   names the staging schema, small and quick;
2. in the target: that DDL's pre-data, then every table's data straight from the artifact with
   only the COPY header line rewritten (`jobs` at a time), then the post-data (indexes,
   constraints, triggers) with `pg_restore -j`, materialized views refreshed;
3. one `ALTER SCHEMA ... RENAME` makes it visible under its name: all or nothing.

The staging name is the caller's (deterministic per run): a retry drops a crashed attempt's."""

from __future__ import annotations

import contextlib
import contextvars
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from backup.dependencies import structure_dump_args
from backup.dependency_models import Dependencies
from backup.errors import RestoreFailed, Stopped
from backup.models import DumpFormat
from backup.pgconn import client_connection
from backup.pgtools import StopCheck, output, start, wait
from backup.restore.databases import rename_schema, scratch_database
from backup.restore.load import toc_without
from backup.restore.provide import PSQL, provide
from backup.restore.rename import fix_renamed

RESTORE = ["--no-owner", "--no-acl", "--exit-on-error"]
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Copy:
    """A copy under a new name: what each of its steps needs."""

    dump: Path  # the unpacked artifact
    fmt: DumpFormat
    deps: Dependencies
    original: str  # the backup's schema
    new: str  # the name the copy ends up under
    staging: str  # its name in the target until the rename
    scratch: str  # the scratch database the structure is fixed in
    target_url: str
    bin_dir: Path
    jobs: int
    should_stop: StopCheck


def structure(c: Copy) -> tuple[Path, list[str], list[str]]:
    """Step 1: the renamed, fixed DDL as a custom archive beside the dump; (path, fixed,
    warnings)."""
    ddl = c.dump.parent / "structure.dump"
    with scratch_database(c.target_url, c.scratch) as scratch_url:
        provide(scratch_url, c.deps, c.bin_dir, c.should_stop)
        with client_connection(scratch_url) as client:
            parallel = [f"--jobs={c.jobs}"] if c.fmt is not DumpFormat.TAR else []
            skip = _skip_schema(c.dump, c.original, c.deps, c.bin_dir)
            args = [*RESTORE, "--schema-only", *parallel, *skip, str(c.dump)]
            wait(start(c.bin_dir, "pg_restore", args, client), c.should_stop)
        with psycopg.connect(scratch_url, autocommit=True) as conn:
            rename_schema(conn, c.original, c.staging)
            fixed, warnings = fix_renamed(conn, c.original, c.new, in_schema=c.staging)
        with client_connection(scratch_url) as client:
            args = structure_dump_args([c.staging], ddl)
            wait(start(c.bin_dir, "pg_dump", args, client), c.should_stop)
    return ddl, fixed, warnings


def load_staged(c: Copy, ddl: Path) -> None:
    """Step 2, into the target under the staging name (created already when it holds an
    extension)."""
    with client_connection(c.target_url) as client:
        skip = _skip_schema(ddl, c.staging, c.deps, c.bin_dir, c.original)
        args = [*RESTORE, "--section=pre-data", *skip, str(ddl)]
        wait(start(c.bin_dir, "pg_restore", args, client), c.should_stop)
    toc = output(c.bin_dir, "pg_restore", ["--list", str(c.dump)]).splitlines()  # the artifact's
    tables = [line for line in toc if " TABLE DATA " in line and not line.startswith(";")]
    sequences = [line for line in toc if " SEQUENCE SET " in line and not line.startswith(";")]
    _load_data(c, [[line] for line in tables] + ([sequences] if sequences else []))
    with client_connection(c.target_url) as client:
        args = [*RESTORE, "--section=post-data", f"--jobs={c.jobs}", str(ddl)]
        wait(start(c.bin_dir, "pg_restore", args, client), c.should_stop)
    _refresh(toc, c.original, c.staging, c.target_url)


def _skip_schema(
    archive: Path, schema: str, deps: Dependencies, bin_dir: Path, original: str | None = None
) -> list[str]:
    """pg_restore arguments that leave out the archive's CREATE SCHEMA of `schema` when the
    schema was created beforehand to hold an extension of the backup's own schema."""
    if not deps.extensions_in(original or schema):
        return []
    listing = archive.with_suffix(".list")
    toc = output(bin_dir, "pg_restore", ["--list", str(archive)])
    listing.write_text(toc_without(toc, (), schema))
    return [f"--use-list={listing}"]


def _load_data(c: Copy, entries: list[list[str]]) -> None:
    """Each entry's `pg_restore -f -` relayed into psql, `jobs` at a time; the first failure
    stops the others."""
    failed = threading.Event()

    def stop(done: int) -> None:
        if failed.is_set():
            raise Stopped("another table's load failed")
        c.should_stop(done)

    def one(lines: list[str]) -> None:
        listing = c.dump.parent / f"entry-{threading.get_ident()}.list"
        listing.write_text("\n".join(lines) + "\n")
        try:
            _relay(c, listing, stop)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=max(1, c.jobs), thread_name_prefix="restore-data") as pool:
        # Each load in a copy of the caller's context: `should_stop` may need it (an activity's).
        futures = [pool.submit(contextvars.copy_context().run, one, lines) for lines in entries]
        errors = [e for f in futures if (e := f.exception())]
    if errors:  # the cause, not the loads it stopped
        raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])


def _relay(c: Copy, listing: Path, should_stop: StopCheck) -> None:
    """One entry's data from the artifact into psql, its COPY header naming the staging schema."""
    with psycopg.connect(c.target_url) as conn:
        row = conn.execute("SELECT quote_ident(%s)", (c.original,)).fetchone()
    assert row is not None
    rewrite = _rewriter(str(row[0]), c.staging)
    with client_connection(c.target_url) as client:
        psql = start(c.bin_dir, "psql", [*PSQL, "--file=-"], client, stdin=subprocess.PIPE)
        source = subprocess.Popen(
            [str(c.bin_dir / "pg_restore"), f"--use-list={listing}", "--file=-", str(c.dump)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        assert psql.stdin is not None and source.stdout is not None
        try:
            # psql stopped early (BrokenPipeError): its wait() says why.
            with contextlib.suppress(BrokenPipeError), psql.stdin:
                _pipe(source.stdout, psql.stdin, rewrite, should_stop)
        finally:
            if source.poll() is None:
                source.kill()
            source.wait()
            source.stdout.close()
            wait(psql, should_stop)


def _pipe(
    reader: IO[bytes], writer: IO[bytes], rewrite: Callable[[bytes], bytes], should_stop: StopCheck
) -> None:
    """The SQL lines before the data (SET ..., the COPY header) get `rewrite`; the data itself
    passes through untouched in chunks."""
    for line in iter(reader.readline, b""):
        writer.write(rewrite(line))
        if line.startswith(b"COPY "):
            copied = 0
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
                copied += len(chunk)
                should_stop(copied)
            return


def _rewriter(quoted_original: str, staging: str) -> Callable[[bytes], bytes]:
    """The artifact names its tables `<original>.<table>`, the schema quoted as pg_dump quotes
    it (as the server's quote_ident does): a COPY header and a setval() get the staging schema."""
    quoted = quoted_original.encode()
    copy, setval = b"COPY " + quoted + b".", b"SELECT pg_catalog.setval('" + quoted + b"."
    new = staging.encode()  # staging names need no quoting (see targets.staging_name)

    def rewrite(line: bytes) -> bytes:
        if line.startswith(copy):
            return b"COPY " + new + b"." + line[len(copy) :]
        if line.startswith(setval):
            return b"SELECT pg_catalog.setval('" + new + b"." + line[len(setval) :]
        if line.startswith((b"COPY ", b"SELECT pg_catalog.setval(")):
            raise RestoreFailed(f"unexpected line in the artifact's data: {line[:200]!r}")
        return line

    return rewrite


def _refresh(toc: list[str], original: str, staging: str, target_url: str) -> None:
    """Materialized views that were populated in the backup, in the archive's order."""
    with psycopg.connect(target_url, autocommit=True) as conn:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'm'"
                " AND relnamespace = to_regnamespace(%s)",
                (staging,),
            )
        ]
        for line in toc:
            for name in names:
                if f" MATERIALIZED VIEW DATA {original} {name} " in line:
                    conn.execute(
                        sql.SQL("REFRESH MATERIALIZED VIEW {}").format(
                            sql.Identifier(staging, name)
                        )
                    )
