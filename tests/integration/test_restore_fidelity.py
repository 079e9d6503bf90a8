"""Restores of a realistic tenant schema (tests/realistic_schema.py) in a platform database of
its own: the dependencies in the manifest, a test restore in every format, every restore target
(own name where it is free, a copy beside the original, another database), each compared with
the live schema object by object and row by row; a target lacking a dependency refused first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from backup.errors import MissingDependency
from backup.models import Compression, DumpFormat
from backup.pgdump import pg_bin_dir
from backup.pipeline import DumpOutcome
from backup.restore import check_by_restore, drop_schema, restore_as
from devstack.postgres import PostgresServer
from tests.catalog_compare import snapshot
from tests.dumps import dump
from tests.realistic_schema import create_shared, create_tenant

TENANT = "fidelity"
USER = "0190d3b2-0000-7000-8000-0000000000aa"


@pytest.fixture(scope="module")
def platform(postgres: PostgresServer) -> Iterator[str]:
    """A platform database with the shared objects and the tenant; dropped afterwards."""
    postgres.drop_database("fidelity_platform")
    postgres.create_database("fidelity_platform")
    url = postgres.url("fidelity_platform")
    with psycopg.connect(url, autocommit=True) as conn:
        create_shared(conn, USER)
        create_tenant(conn, TENANT, USER)
    yield url
    postgres.drop_database("fidelity_platform")


@pytest.fixture(scope="module")
def dumps(platform: str, tmp_path_factory: pytest.TempPathFactory) -> dict[DumpFormat, DumpOutcome]:
    return {
        fmt: dump(platform, TENANT, tmp_path_factory.mktemp(fmt.value), fmt, Compression.ZSTD)
        for fmt in DumpFormat
    }


def databases(url: str, prefix: str) -> list[str]:
    with psycopg.connect(url) as conn:
        query = "SELECT datname FROM pg_database WHERE datname LIKE %s"
        return [row[0] for row in conn.execute(query, (prefix + "%",))]


def test_the_manifest_records_what_the_schema_needs_from_outside(
    dumps: dict[DumpFormat, DumpOutcome],
) -> None:
    deps = dumps[DumpFormat.CUSTOM].manifest.dependencies
    assert deps is not None
    assert {(e.name, e.schema_name) for e in deps.extensions} == {
        ("vector", "public"),
        ("citext", "extensions"),
    }
    assert all(e.version for e in deps.extensions)
    objects = {(o.kind, o.identity) for o in deps.objects}
    assert {
        ("function", "auth.uid()"),
        ("table", "public.users"),
        ("type", "public.plan_tier"),
    } <= objects
    assert [fk.name for fk in deps.foreign_keys] == ["members_user_id_fkey"]
    assert deps.foreign_keys[0].references == "public.users"
    # Structure only: the shared table's definition, never its rows.
    assert "CREATE TABLE public.users" in deps.definitions
    assert "COPY" not in deps.definitions and "INSERT" not in deps.definitions
    assert USER not in deps.definitions
    lo = deps.large_objects
    assert lo is not None and lo.count == 15 and lo.total_bytes > 0 and not lo.missing
    assert [(c.table, c.column) for c in lo.columns] == [(f"{TENANT}.documents", "body")]


def test_a_schema_without_outside_dependencies_says_so(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS plain_tenant CASCADE")
        conn.execute("CREATE SCHEMA plain_tenant")
        conn.execute("CREATE TABLE plain_tenant.t AS SELECT g AS id FROM generate_series(1, 3) g")
    deps = dump(postgres.url(), "plain_tenant", tmp_path).manifest.dependencies
    assert deps is not None and deps.describe() == "none outside the schema"


@pytest.mark.parametrize("fmt", list(DumpFormat))
def test_every_format_test_restores_with_its_dependencies_and_large_objects(
    platform: str, dumps: dict[DumpFormat, DumpOutcome], fmt: DumpFormat
) -> None:
    outcome = dumps[fmt]
    check = check_by_restore(
        outcome.artifact_path,
        outcome.manifest,
        platform,
        "export_backup_verify_fidelity",
        pg_bin_dir(),
    )
    assert check.verified, check.describe()
    assert check.tables_restored == len(outcome.manifest.row_counts) > 24  # partitions too
    assert check.large_objects == 15
    assert len(check.not_validated) == 1 and "members_user_id_fkey" in check.not_validated[0]
    assert databases(platform, "export_backup_verify_") == []


def test_an_extension_version_the_server_lacks_is_replaced_by_its_default_with_a_note(
    dumps: dict[DumpFormat, DumpOutcome], platform: str
) -> None:
    outcome = dumps[DumpFormat.CUSTOM]
    deps = outcome.manifest.dependencies
    assert deps is not None
    extensions = [
        e.model_copy(update={"version": "0.0.1"}) if e.name == "vector" else e
        for e in deps.extensions
    ]
    manifest = outcome.manifest.model_copy(
        update={"dependencies": deps.model_copy(update={"extensions": extensions})}
    )
    check = check_by_restore(
        outcome.artifact_path, manifest, platform, "export_backup_verify_ver", pg_bin_dir()
    )
    assert check.verified, check.describe()
    assert any("vector" in n and "0.0.1" in n and "instead" in n for n in check.notes)


def test_a_test_restore_fails_when_a_large_object_is_not_in_the_artifact(
    dumps: dict[DumpFormat, DumpOutcome], platform: str
) -> None:
    """A manifest from before large objects were appended: the references do not resolve."""
    outcome = dumps[DumpFormat.CUSTOM]
    deps = outcome.manifest.dependencies
    assert deps is not None and deps.large_objects is not None
    without = deps.model_copy(
        update={"large_objects": deps.large_objects.model_copy(update={"offset": None})}
    )
    manifest = outcome.manifest.model_copy(update={"dependencies": without})
    check = check_by_restore(
        outcome.artifact_path, manifest, platform, "export_backup_verify_nolo", pg_bin_dir()
    )
    assert not check.verified
    assert any("refers to no large object" in m for m in check.mismatches), check.mismatches


@pytest.mark.parametrize("fmt", list(DumpFormat))
def test_a_copy_beside_the_original_is_faithful_and_independent(
    platform: str, dumps: dict[DumpFormat, DumpOutcome], fmt: DumpFormat
) -> None:
    copy = f"fidelity_copy_{fmt.value}"
    drop_schema(platform, copy)
    live = snapshot(platform, TENANT)
    restored = restore_as(
        dumps[fmt].artifact_path,
        dumps[fmt].manifest,
        platform,
        copy,
        pg_bin_dir(),
        scratch=f"export_backup_restore_fid_{fmt.value}",
    )
    try:
        assert restored.row_counts == dumps[fmt].manifest.row_counts
        assert restored.large_objects == 15
        assert snapshot(platform, copy, also=TENANT) == live
        # Text that named the original now names the copy; what could not be fixed is listed.
        assert any("touch()" in n and "search_path" in n for n in restored.notes), restored.notes
        assert any("recent_events" in n for n in restored.notes), restored.notes
        assert any("label()" in w for w in restored.warnings), restored.warnings
        with psycopg.connect(platform) as conn:
            config = conn.execute(
                "SELECT proconfig FROM pg_proc WHERE oid = %s::regprocedure",
                (f"{copy}.touch()",),
            ).fetchone()
            assert config == ([f"search_path={copy}, public"],)
            shared = conn.execute(  # large objects of its own: never the live ones
                f"SELECT count(*) FROM {copy}.documents c JOIN {TENANT}.documents d"
                " ON c.body = d.body"
            ).fetchone()
            assert shared == (0,)
            validated = conn.execute(
                "SELECT convalidated FROM pg_constraint WHERE conname = 'members_user_id_fkey'"
                " AND connamespace = to_regnamespace(%s)",
                (copy,),
            ).fetchone()
            assert validated == (True,)  # the referenced rows are there in the platform database
        assert snapshot(platform, TENANT) == live  # the original untouched
    finally:
        drop_schema(platform, copy)
    assert databases(platform, "export_backup_restore_") == []


def test_the_schema_restores_under_its_own_name_after_it_was_dropped(
    platform: str, dumps: dict[DumpFormat, DumpOutcome]
) -> None:
    """The disaster: the schema and its large objects are gone."""
    outcome = dumps[DumpFormat.CUSTOM]
    live = snapshot(platform, TENANT)
    with psycopg.connect(platform, autocommit=True) as conn:
        conn.execute(f"SELECT lo_unlink(body) FROM {TENANT}.documents WHERE body IS NOT NULL")
        conn.execute(f"DROP SCHEMA {TENANT} CASCADE")
    restored = restore_as(
        outcome.artifact_path,
        outcome.manifest,
        platform,
        TENANT,
        pg_bin_dir(),
        scratch="export_backup_restore_own",
    )
    assert restored.row_counts == outcome.manifest.row_counts
    assert restored.warnings == [] and restored.large_objects == 15
    assert snapshot(platform, TENANT) == live


def test_a_database_lacking_dependencies_is_refused_before_anything_is_created(
    postgres: PostgresServer, dumps: dict[DumpFormat, DumpOutcome]
) -> None:
    postgres.drop_database("fidelity_empty")
    postgres.create_database("fidelity_empty")
    url = postgres.url("fidelity_empty")
    try:
        outcome = dumps[DumpFormat.CUSTOM]
        for create_extensions in (False, True):  # objects of other schemas are never created
            with pytest.raises(MissingDependency) as refused:
                restore_as(
                    outcome.artifact_path,
                    outcome.manifest,
                    url,
                    TENANT,
                    pg_bin_dir(),
                    scratch="export_backup_restore_empty",
                    create_extensions=create_extensions,
                )
            message = str(refused.value)
            for needed in ("vector", "citext", "auth.uid()", "public.users", "public.plan_tier"):
                assert needed in message
            assert "CREATE EXTENSION" in message
            with psycopg.connect(url) as conn:
                created = conn.execute(
                    "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = %s),"
                    " (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')",
                    (TENANT,),
                ).fetchone()
            assert created == (0, 0)
    finally:
        postgres.drop_database("fidelity_empty")


def test_missing_extensions_are_created_only_when_the_setting_says_so(
    postgres: PostgresServer, platform: str, tmp_path: Path
) -> None:
    with psycopg.connect(platform, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS vectors CASCADE")
        conn.execute("CREATE SCHEMA vectors")
        conn.execute("CREATE TABLE vectors.items (id int PRIMARY KEY, v public.vector(3))")
        conn.execute("INSERT INTO vectors.items VALUES (1, '[1,2,3]'), (2, '[4,5,6]')")
    outcome = dump(platform, "vectors", tmp_path)
    postgres.drop_database("fidelity_other")
    postgres.create_database("fidelity_other")
    url = postgres.url("fidelity_other")
    try:
        args = (outcome.artifact_path, outcome.manifest, url, "vectors", pg_bin_dir())
        scratch = "export_backup_restore_vec"
        with pytest.raises(MissingDependency, match="RESTORE_CREATE_EXTENSIONS"):
            restore_as(*args, scratch=scratch)
        restored = restore_as(*args, scratch=scratch, create_extensions=True)
        assert restored.row_counts == outcome.manifest.row_counts == {"items": 2}
        assert snapshot(url, "vectors") == snapshot(platform, "vectors")
    finally:
        postgres.drop_database("fidelity_other")


@pytest.mark.parametrize("name", ['We"ird.Na*me', "ténant", "select"])
@pytest.mark.parametrize("fmt", [DumpFormat.CUSTOM, DumpFormat.DIRECTORY])
def test_a_copy_of_a_hostile_name_keeps_rows_sequences_and_large_objects(
    platform: str, tmp_path: Path, name: str, fmt: DumpFormat
) -> None:
    """The fast copy rewrites COPY headers and setval() calls: names pg_dump quotes too."""
    schema, table, copy = sql.Identifier(name), sql.Identifier(name, "T ab"), name + "_copy"
    with psycopg.connect(platform, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int GENERATED ALWAYS AS IDENTITY, v text, d oid)").format(
                table
            )
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (v, d) SELECT 'x' || g,"
                " CASE WHEN g = 1 THEN lo_from_bytea(0, 'hi') END FROM generate_series(1, 10) g"
            ).format(table)
        )
    outcome = dump(platform, name, tmp_path, fmt)
    drop_schema(platform, copy)
    try:
        restored = restore_as(outcome.artifact_path, outcome.manifest, platform, copy, pg_bin_dir())
        assert restored.row_counts == {"T ab": 10} and restored.large_objects == 1
        with psycopg.connect(platform) as conn:
            sequence = conn.execute(
                "SELECT pg_get_serial_sequence(%s, 'id')",
                (sql.Identifier(copy, "T ab").as_string(conn),),
            ).fetchone()
            assert sequence is not None
            home = conn.execute(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.oid = %s::regclass",
                (sequence[0],),
            ).fetchone()
            assert home is not None and home[0] == copy  # the copy's own sequence
            last = conn.execute(sql.SQL("SELECT last_value FROM {}").format(sql.SQL(sequence[0])))
            assert last.fetchone() == (10,)
            content = conn.execute(
                sql.SQL("SELECT lo_get(d) FROM {} WHERE d IS NOT NULL").format(
                    sql.Identifier(copy, "T ab")
                )
            ).fetchone()
            assert content == (b"hi",)
    finally:
        drop_schema(platform, copy)
        drop_schema(platform, name)


def test_an_extension_installed_in_the_schema_itself_comes_back_with_it(
    postgres: PostgresServer, platform: str, tmp_path: Path
) -> None:
    """pg_dump -n leaves out CREATE EXTENSION even for an extension in the dumped schema."""
    with psycopg.connect(platform, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS inside CASCADE")
        conn.execute("CREATE SCHEMA inside")
        conn.execute("CREATE EXTENSION hstore WITH SCHEMA inside")
        conn.execute("CREATE TABLE inside.t (id int PRIMARY KEY, h inside.hstore)")
        conn.execute("INSERT INTO inside.t VALUES (1, 'a=>1'), (2, 'b=>2')")
    outcome = dump(platform, "inside", tmp_path)
    deps = outcome.manifest.dependencies
    assert deps is not None and [e.name for e in deps.extensions_in("inside")] == ["hstore"]
    check = check_by_restore(
        outcome.artifact_path, outcome.manifest, platform, "export_backup_verify_in", pg_bin_dir()
    )
    assert check.verified, check.describe()
    # A database holds an extension once: no copy beside the original, and nothing created.
    with pytest.raises(MissingDependency, match="hstore"):
        restore_as(outcome.artifact_path, outcome.manifest, platform, "inside_copy", pg_bin_dir())
    with psycopg.connect(platform) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%inside_copy%'"
            " OR nspname LIKE 'export_backup_staging_%'"
        ).fetchone() == (0,)
    postgres.drop_database("fidelity_inside")
    postgres.create_database("fidelity_inside")
    try:
        other = postgres.url("fidelity_inside")
        restored = restore_as(
            outcome.artifact_path, outcome.manifest, other, "inside", pg_bin_dir()
        )
        assert restored.row_counts == {"t": 2}
        with psycopg.connect(other) as conn:
            home = conn.execute(
                "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'hstore'"
            ).fetchone()
            value = conn.execute("SELECT h OPERATOR(inside.->) 'a' FROM inside.t WHERE id = 1")
            assert home == ("inside",) and value.fetchone() == ("1",)
    finally:
        postgres.drop_database("fidelity_inside")
        drop_schema(platform, "inside")
