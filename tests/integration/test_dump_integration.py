"""The dump pipeline against a real PostgreSQL 18: every format and compression restores to the
same tables and rows; exactly the tenant's schema is dumped, whatever its name; the password
never reaches argv, logs or the spool; the size cap stops a dump and leaves nothing behind."""

from __future__ import annotations

import contextlib
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from backup.errors import BackupTooLarge, SchemaExists, SchemaNotFound
from backup.models import Compression, DumpFormat, Project
from backup.pgdump import directory_compression, pg_bin_dir
from backup.pipeline import PipelineOptions, dump_schema
from backup.restore import restore, restore_as, row_counts
from devstack.postgres import PostgresServer
from tests.dumps import dump

# Schemas whose names an unanchored or case-folding pattern for `acme` would also match.
ACME_LOOKALIKES = ["Acme", "acme2", "acme_archive", "xacme"]

# Every namespace in a database that holds a relation, function or type, system ones aside.
NAMESPACES_IN_USE = """
SELECT DISTINCT n.nspname FROM pg_catalog.pg_namespace n
WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
  AND (n.nspname <> 'public'
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid))
ORDER BY 1
"""


@pytest.fixture(scope="module")
def acme_lookalikes(postgres: PostgresServer) -> Iterator[list[str]]:
    """Look-alike tenants beside the seeded ones (globex, initech, umbrella) while the test runs."""
    create_owned_schemas(postgres, ACME_LOOKALIKES)
    yield ACME_LOOKALIKES
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        for name in ACME_LOOKALIKES:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def namespaces_in_use(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(NAMESPACES_IN_USE)]


@pytest.mark.parametrize("fmt", list(DumpFormat))
@pytest.mark.parametrize("compression", list(Compression))
def test_every_format_restores_the_same_tables_and_rows(
    postgres: PostgresServer,
    scratch_db: str,
    tmp_path: Path,
    acme_lookalikes: list[str],
    fmt: DumpFormat,
    compression: Compression,
) -> None:
    others = set(namespaces_in_use(postgres.url())) - {"acme"}
    assert {"tenant_globex", "umbrella", *acme_lookalikes} <= others, "no neighbour to leak"
    outcome = dump(postgres.url(), "acme", tmp_path, fmt, compression)
    source = row_counts(postgres.url(), "acme")

    restore(outcome.artifact_path, fmt, outcome.manifest.compression, scratch_db, pg_bin_dir())

    assert namespaces_in_use(scratch_db) == ["acme"], "something beside the tenant was restored"
    assert row_counts(scratch_db, "acme") == source == outcome.manifest.row_counts
    assert outcome.manifest.tables == sorted(source)
    assert outcome.manifest.table_count == len(source) > 0
    assert outcome.manifest.size_bytes == outcome.artifact_path.stat().st_size
    if fmt is DumpFormat.DIRECTORY:
        # pg_dump compressed the files inside a plain tar; raw_bytes is that tar's size.
        assert (
            outcome.manifest.compression
            is directory_compression(pg_bin_dir(), compression, zstd_level=3, gzip_level=6)[0]
        )
        assert outcome.artifact_path.name == "b.dir.tar"
        assert outcome.manifest.size_bytes == outcome.manifest.raw_bytes
        with tarfile.open(outcome.artifact_path) as tar:
            # toc.dat is never compressed; each table's data is in <dump id>.dat[.gz|.zst]
            data_files = [n for n in tar.getnames() if n.split("/")[-1][:1].isdigit()]
        suffix = {Compression.ZSTD: ".zst", Compression.GZIP: ".gz", Compression.NONE: ".dat"}
        assert data_files
        assert all(n.endswith(suffix[outcome.manifest.compression]) for n in data_files)
    else:
        assert outcome.manifest.compression is compression
        if compression is not Compression.NONE:
            assert outcome.manifest.size_bytes < outcome.manifest.raw_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [outcome.artifact_path.name, outcome.artifact_path.name + ".manifest.json"]
    )


# Each hostile schema has a neighbour that an unquoted -n pattern would also match.
HOSTILE = [
    ("tenant_1", "tenant_10"),
    ("Mixed_Case", "mixed_case"),
    ("star*", "starlight"),
    ("q?", "qa"),
    ("dot.ted", "dotXted"),
    ('quo"te', "quote"),
    ("it's; DROP -- x", "its"),
    ("sp ace", "spXace"),
    ("tenant_ü", "tenant_u"),
    ("end$", "end"),
    ("(a|b)", "a"),
]


@pytest.fixture(scope="module")
def hostile_schemas(postgres: PostgresServer) -> list[str]:
    names = sorted({n for pair in HOSTILE for n in pair})
    create_owned_schemas(postgres, names)
    return names


def create_owned_schemas(postgres: PostgresServer, names: list[str]) -> None:
    """Fresh schemas, each with one table naming its owner schema (so a leak is recognisable)."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        for name in names:
            schema = sql.Identifier(name)
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            conn.execute(sql.SQL("CREATE TABLE {}.owner (name text)").format(schema))
            conn.execute(sql.SQL("INSERT INTO {}.owner VALUES (%s)").format(schema), (name,))


@pytest.mark.parametrize(("schema", "neighbour"), HOSTILE)
def test_hostile_schema_names_dump_exactly_their_schema(
    postgres: PostgresServer,
    scratch_db: str,
    tmp_path: Path,
    hostile_schemas: list[str],
    schema: str,
    neighbour: str,
) -> None:
    outcome = dump(postgres.url(), schema, tmp_path)
    restore(outcome.artifact_path, DumpFormat.CUSTOM, Compression.ZSTD, scratch_db, pg_bin_dir())

    restored = namespaces_in_use(scratch_db)
    with psycopg.connect(scratch_db) as conn:
        owners = conn.execute(
            sql.SQL("SELECT name FROM {}.owner").format(sql.Identifier(schema))
        ).fetchall()
    assert restored == [schema], f"another tenant leaked into the dump of {schema!r}"
    assert owners == [(schema,)]
    assert outcome.manifest.tables == ["owner"]


def test_a_schema_that_does_not_exist_is_refused(postgres: PostgresServer, tmp_path: Path) -> None:
    with pytest.raises(SchemaNotFound, match="nope"):
        dump(postgres.url(), "nope", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_size_cap_stops_the_dump_and_leaves_nothing(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with pytest.raises(BackupTooLarge, match="BACKUP_MAX_BYTES"):
        dump(
            postgres.url(), "umbrella", tmp_path, compression=Compression.NONE, max_bytes=64 * 1024
        )
    assert list(tmp_path.iterdir()) == []


def test_the_dump_slot_is_held_while_the_database_is_worked_and_given_back_before_the_manifest(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """MAX_CONCURRENT_DUMPS bounds database work, not the spool writes after it: the slot covers
    the snapshot, pg_dump and the counts, and is free again before the manifest is written."""
    events: list[str] = []

    folder = tmp_path / "first"

    @contextlib.contextmanager
    def slot() -> Iterator[None]:
        events.append("acquired")
        try:
            yield
        finally:
            manifests = list(folder.glob("*.manifest.json"))
            events.append("released after the manifest" if manifests else "released")

    def progress(_: int) -> None:
        if events[-1] != "dumping":
            events.append("dumping")

    outcome = dump_schema(
        database_url=postgres.url(),
        project=Project(project_id="umbrella", name="umbrella", schema_name="umbrella"),
        fmt=DumpFormat.CUSTOM,
        compression=Compression.ZSTD,
        out_dir=folder,
        base_name="b",
        options=PipelineOptions(bin_dir=pg_bin_dir(), max_bytes=10**10, slot=slot),
        on_progress=progress,
    )
    assert events == ["acquired", "dumping", "released"]
    assert outcome.manifest_path.exists()

    events.clear()
    folder = tmp_path / "nope"
    with pytest.raises(SchemaNotFound):
        dump_schema(
            database_url=postgres.url(),
            project=Project(project_id="nope", name="nope", schema_name="nope"),
            fmt=DumpFormat.CUSTOM,
            compression=Compression.ZSTD,
            out_dir=folder,
            base_name="b",
            options=PipelineOptions(bin_dir=pg_bin_dir(), max_bytes=10**10, slot=slot),
        )
    assert events == ["acquired", "released"]


def test_a_rejected_password_is_reported_without_it(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = f"postgresql://postgres:NotThePassword@127.0.0.1:{postgres.port}/postgres"
    with pytest.raises(psycopg.OperationalError) as caught:
        dump(url, "acme", tmp_path)
    assert "NotThePassword" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_the_password_never_appears_in_any_argv_or_file(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    secret = postgres.password.encode()
    seen_pg_dump = threading.Event()
    leaked: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    argv = cmdline.read_bytes()
                except OSError:
                    continue
                if b"pg_dump" in argv:
                    seen_pg_dump.set()
                if secret in argv:
                    leaked.append(argv.decode(errors="replace"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for fmt in (DumpFormat.CUSTOM, DumpFormat.DIRECTORY):
            out = tmp_path / fmt.value
            out.mkdir()
            dump(postgres.url(), "umbrella", out, fmt)
    finally:
        stop.set()
        watcher.join()
    assert seen_pg_dump.is_set(), "the watcher never saw pg_dump running: the test proves nothing"
    assert leaked == []
    for path in tmp_path.rglob("*"):
        assert path.is_dir() or secret not in path.read_bytes(), path


def test_row_counts_are_those_of_the_dump_under_concurrent_writes(
    postgres: PostgresServer, scratch_db: str, tmp_path: Path
) -> None:
    """The dump and the manifest's counts come from one snapshot: rows inserted meanwhile are in
    neither, and the restore has exactly the counted rows."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS busy CASCADE; CREATE SCHEMA busy")
        conn.execute("CREATE TABLE busy.events (id bigserial primary key, body text)")
        conn.execute(
            "INSERT INTO busy.events (body) SELECT repeat(md5(g::text), 8) "
            "FROM generate_series(1, 200000) g"
        )
    stop, written = threading.Event(), [0]

    def writer() -> None:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(
                    "INSERT INTO busy.events (body) SELECT 'late' FROM generate_series(1, 50)"
                )
                written[0] += 50

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        outcome = dump(postgres.url(), "busy", tmp_path)
    finally:
        stop.set()
        thread.join()

    restore(outcome.artifact_path, DumpFormat.CUSTOM, Compression.ZSTD, scratch_db, pg_bin_dir())
    assert written[0] > 0, "the writer never ran: the test proves nothing"
    assert row_counts(scratch_db, "busy") == outcome.manifest.row_counts
    assert outcome.manifest.row_counts["events"] < row_counts(postgres.url(), "busy")["events"]


@pytest.mark.parametrize("fmt", list(DumpFormat))
def test_restore_as_a_new_schema_beside_the_original(
    postgres: PostgresServer, tmp_path: Path, fmt: DumpFormat
) -> None:
    outcome = dump(postgres.url(), "acme", tmp_path, fmt)
    before = row_counts(postgres.url(), "acme")
    copy = f"acme_copy_{fmt.value}"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(copy)))

    restored = restore_as(
        outcome.artifact_path, outcome.manifest, postgres.url(), copy, pg_bin_dir()
    )

    assert restored.row_counts == outcome.manifest.row_counts == before
    assert row_counts(postgres.url(), "acme") == before  # the original is untouched
    with pytest.raises(SchemaExists, match=copy):
        restore_as(outcome.artifact_path, outcome.manifest, postgres.url(), copy, pg_bin_dir())
    with psycopg.connect(postgres.url()) as conn:
        leftovers = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'export_backup_restore_%'"
        ).fetchall()
    assert leftovers == []
