"""The dev stack's PostgreSQL really demands a password and never exposes it; the seed converges."""

from __future__ import annotations

import hashlib
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devstack.postgres import PostgresServer, pg_bin_dir
from devstack.seed import SAMPLE_PROJECTS, seed

SCALE = 0.05


@pytest.fixture(scope="module")
def server(server_dir: Path) -> Iterator[PostgresServer]:
    with PostgresServer(server_dir / "devstack-pg" / "data") as pg:
        yield pg


def _row_counts(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
    counts = {}
    for table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        assert row is not None
        counts[table] = row[0]
    return counts


def _content_digest(conn: psycopg.Connection) -> str:
    """A fingerprint of generated values, to show a re-seed reproduces the same rows."""
    query = "SELECT string_agg(md5(c::text), '' ORDER BY id) FROM acme.customers c"
    row = conn.execute(query).fetchone()
    assert row is not None
    return hashlib.sha256(row[0].encode()).hexdigest()


def test_bin_dir_has_client_and_server_programs() -> None:
    for program in ("pg_dump", "pg_restore", "psql", "initdb", "pg_ctl"):
        assert (pg_bin_dir() / program).exists(), program


def test_connects_with_password_over_scram(server: PostgresServer) -> None:
    with psycopg.connect(server.url()) as conn:
        row = conn.execute(
            "SELECT current_user, current_setting('server_version_num')::int,"
            " current_setting('listen_addresses'), current_setting('unix_socket_directories')"
        ).fetchone()
        methods = conn.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules").fetchall()
    assert row is not None
    user, version, listen, sockets = row
    assert (user, version // 10000, listen, sockets) == ("postgres", 18, "127.0.0.1", "")
    assert methods == [("scram-sha-256",)]


def test_wrong_or_missing_password_is_rejected(
    server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    base = make_conninfo(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(base, password=server.password + "x")
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(base, passfile="/nonexistent")


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_password_is_not_in_argv_environment_or_log(server: PostgresServer) -> None:
    secret = server.password.encode()
    postmasters = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue  # exited meanwhile
        assert secret not in cmdline, cmdline
        if str(server.data_dir).encode() in cmdline:
            postmasters += 1
            assert secret not in environ
    assert postmasters == 1  # the scan did see our server
    assert secret not in server.log_file.read_bytes()
    assert not list(server.data_dir.parent.glob(".pwfile-*"))  # initdb's input is gone


def test_password_file_is_private_and_reused(server: PostgresServer) -> None:
    assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
    again = PostgresServer(server.data_dir)
    again.start()  # adopts the running server instead of starting a second one
    assert (again.password, again.port) == (server.password, server.port)


def test_create_and_drop_scratch_database(server: PostgresServer) -> None:
    server.create_database("Scratch Restore")
    lingering = psycopg.connect(server.url("Scratch Restore"))  # e.g. a crashed verifier
    server.drop_database("Scratch Restore")  # forces it out
    with pytest.raises(psycopg.OperationalError):
        lingering.execute("SELECT 1")
    lingering.close()
    server.drop_database("Scratch Restore")  # already gone: no error
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url("Scratch Restore"))


async def test_seed_creates_control_plane_and_tenants(server: PostgresServer) -> None:
    await seed(server.url(), scale=SCALE)
    with psycopg.connect(server.url()) as conn:
        projects = conn.execute(
            "SELECT id, name, status, schema_name FROM control_plane.projects ORDER BY id"
        ).fetchall()
        expected = sorted((p.id, p.name, p.status, p.schema_name) for p in SAMPLE_PROJECTS)
        assert projects == expected
        for project in SAMPLE_PROJECTS:
            if project.schema_name is None:
                continue
            counts = project.row_counts(SCALE)
            assert _row_counts(conn, project.schema_name, list(counts)) == counts
        schemas = {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace")}
    assert {"acme", "tenant_globex", "initech", "umbrella"} <= schemas
    assert "hooli" not in schemas and "globex" not in schemas


async def test_seed_is_idempotent_and_deterministic(server: PostgresServer) -> None:
    await seed(server.url(), scale=SCALE)
    with psycopg.connect(server.url()) as conn:
        before = _content_digest(conn)
        oid_row = conn.execute("SELECT 'acme.customers'::regclass::oid").fetchone()
    await seed(server.url(), scale=SCALE)  # already seeded: kept as is
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT 'acme.customers'::regclass::oid").fetchone() == oid_row
    await seed(server.url(), scale=SCALE, force=True)  # rebuilt: same rows again
    with psycopg.connect(server.url()) as conn:
        assert _content_digest(conn) == before
        count = conn.execute("SELECT count(*) FROM control_plane.projects").fetchone()
        assert count == (len(SAMPLE_PROJECTS),)
        umbrella = next(p for p in SAMPLE_PROJECTS if p.id == "umbrella")
        assert _row_counts(conn, "umbrella", ["readings"]) == {
            "readings": umbrella.row_counts(SCALE)["readings"]
        }


def test_stop_restart_with_awkward_password(server_dir: Path) -> None:
    tmp_path = server_dir / "awkward"
    pg = PostgresServer(tmp_path / "data", password="p@ss:w/rd %?#&")
    pg.start()
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    pg.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.url(), connect_timeout=2)
    pg.stop()  # already stopped: no error
    with pg, psycopg.connect(pg.url()) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    assert PostgresServer(tmp_path / "data").password == "p@ss:w/rd %?#&"


def test_start_failure_reports_the_server_log(server_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        pg = PostgresServer(server_dir / "port-taken" / "data", port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="Address already in use"):
            pg.start()
