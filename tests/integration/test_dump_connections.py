"""The dump's snapshot connections against a real PostgreSQL 18: a pool that reuses a clean one,
replaces one the server closed, never reuses one left in an aborted transaction or after an
error, never hands one to two transactions at once; and pg_dump's whole-database scans skipped
only where they could not add a line to the dump."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import zstandard
from psycopg import sql

from backup import pgconn, pipeline
from backup.catalog import SnapshotFacts, snapshot_facts
from backup.models import DumpFormat
from backup.pgconn import read_only_transaction
from backup.pgdump import skipped_scans
from devstack.postgres import PostgresServer
from tests.dumps import dump, plain_dump

SCHEMA = "pool_tenant"


pytestmark = pytest.mark.usefixtures("empty_snapshot_pool")


@pytest.fixture
def tenant(scratch_db: str) -> str:
    """A fresh database with one small tenant and no comment or label on anything."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        s = sql.Identifier(SCHEMA)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        conn.execute(
            sql.SQL("CREATE TABLE {}.notes AS SELECT g AS id FROM generate_series(1, 7) g").format(
                s
            )
        )
    return scratch_db


def backend(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_a_clean_connection_is_reused_in_a_new_snapshot(tenant: str) -> None:
    with read_only_transaction(tenant) as conn:
        first = backend(conn)
    with psycopg.connect(tenant, autocommit=True) as writer:
        writer.execute(f"INSERT INTO {SCHEMA}.notes VALUES (8)")
    with read_only_transaction(tenant) as conn:
        assert backend(conn) == first
        row = conn.execute(f"SELECT count(*) FROM {SCHEMA}.notes").fetchone()
        assert row == (8,)  # a new transaction: it sees what was committed in between
        setting = conn.execute("SELECT current_setting('transaction_isolation')").fetchone()
        assert setting == ("repeatable read",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(f"INSERT INTO {SCHEMA}.notes VALUES (9)")


def test_a_connection_the_server_closed_is_replaced(tenant: str) -> None:
    with read_only_transaction(tenant) as conn:
        first = backend(conn)
    with psycopg.connect(tenant, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
    with read_only_transaction(tenant) as conn:
        assert backend(conn) != first
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_connection_left_in_an_aborted_transaction_is_not_reused(tenant: str) -> None:
    with read_only_transaction(tenant) as conn:
        first = backend(conn)
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
    with read_only_transaction(tenant) as conn:
        assert backend(conn) != first


def test_a_connection_whose_transaction_raised_is_closed(tenant: str) -> None:
    with pytest.raises(RuntimeError), read_only_transaction(tenant) as conn:
        failed = conn
        raise RuntimeError("the dump failed")
    assert failed.closed
    with read_only_transaction(tenant) as conn:
        assert conn is not failed


def test_two_transactions_at_once_never_share_a_connection(tenant: str) -> None:
    with read_only_transaction(tenant) as one, read_only_transaction(tenant) as two:
        assert backend(one) != backend(two)
    with read_only_transaction(tenant) as one, read_only_transaction(tenant) as two:
        assert one is not two  # both came back to the pool, and are handed out apart again
        assert backend(one) != backend(two)


def test_idle_connections_are_bounded(tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgconn, "IDLE_CONNECTIONS", 1)
    with read_only_transaction(tenant) as one, read_only_transaction(tenant) as two:
        pass
    assert one.closed != two.closed  # one kept, the other closed


def test_consecutive_dumps_share_one_backend(tenant: str, tmp_path: Path) -> None:
    """The pipeline's own snapshot transaction comes from the pool: two dumps in a row leave one
    idle connection, the same one, and no other backend behind."""
    first = dump(tenant, SCHEMA, tmp_path / "one")
    idle = pgconn._idle[tenant]
    assert len(idle) == 1
    kept = idle[0]
    second = dump(tenant, SCHEMA, tmp_path / "two")
    assert pgconn._idle[tenant] == [kept]
    assert first.manifest.row_counts == second.manifest.row_counts == {"notes": 7}


def test_skipping_the_empty_scans_writes_the_same_dump(tenant: str) -> None:
    with read_only_transaction(tenant) as conn:
        facts = snapshot_facts(conn, SCHEMA)
        flags = skipped_scans(facts)
        assert flags == ["--no-security-labels", "--no-comments"]
        skipped = plain_dump(tenant, SCHEMA, facts.snapshot, flags)
        full = plain_dump(tenant, SCHEMA, facts.snapshot, [])
    assert "CREATE TABLE pool_tenant.notes" in full
    assert skipped == full


def test_a_comment_in_the_schema_keeps_the_comment_scan(tenant: str, tmp_path: Path) -> None:
    with psycopg.connect(tenant, autocommit=True) as conn:
        conn.execute(f"COMMENT ON TABLE {SCHEMA}.notes IS 'kept in the dump'")
    with read_only_transaction(tenant) as conn:
        facts = snapshot_facts(conn, SCHEMA)
    assert facts.schema_comments and not facts.security_labels
    assert skipped_scans(facts) == ["--no-security-labels"]
    dumped = dump(tenant, SCHEMA, tmp_path / "out", DumpFormat.SQL)
    text = zstandard.decompress(dumped.artifact_path.read_bytes(), max_output_size=1 << 24)
    assert b"COMMENT ON TABLE pool_tenant.notes IS 'kept in the dump'" in text


def test_a_built_in_schema_keeps_the_comment_scan() -> None:
    """`public` (oid 2200) carries a comment of its own below the user-object oids."""
    public = SnapshotFacts("", 2200, "18", [], 0, security_labels=False, schema_comments=False)
    assert skipped_scans(public) == ["--no-security-labels"]
    tenant = replace(public, namespace=16500, security_labels=True, schema_comments=True)
    assert skipped_scans(tenant) == []


def test_facts_of_a_missing_schema(postgres: PostgresServer) -> None:
    with read_only_transaction(postgres.url()) as conn:
        facts = snapshot_facts(conn, "no_such_tenant")
    assert facts.namespace is None and facts.tables == [] and facts.data_bytes == 0


def test_catalog_reads_run_without_parallel_workers_and_counts_with_them(
    tenant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parallel workers cost more than a catalog scan (bench/findings.md), but count(*) of a
    large table wants them: off from snapshot_facts on, back to the default for the counts."""
    with psycopg.connect(tenant) as conn:
        default = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()
    assert default is not None and default[0] != "0"
    seen: dict[str, str] = {}
    real_describe, real_counts = pipeline.large_objects.describe, pipeline.exact_row_counts

    def workers(conn: psycopg.Connection) -> str:
        row = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()
        assert row is not None
        return str(row[0])

    def describe(conn: psycopg.Connection, schema: str) -> object:
        seen["catalog"] = workers(conn)
        return real_describe(conn, schema)

    def counts(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
        seen["counts"] = workers(conn)
        return real_counts(conn, schema, tables)

    monkeypatch.setattr(pipeline.large_objects, "describe", describe)
    monkeypatch.setattr(pipeline, "exact_row_counts", counts)
    dump(tenant, SCHEMA, tmp_path / "out")
    assert seen == {"catalog": "0", "counts": default[0]}
    with read_only_transaction(tenant) as conn:  # the pooled connection, as it came back
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone() == default
