"""Verified test restores: a backup is restored into a scratch database and its tables and row
counts compared with the manifest; only a backup that passes is uploaded."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from temporalio.client import Client

from backup.download import download
from backup.files import sha256_of
from backup.models import ExportRequest
from backup.pgdump import pg_bin_dir
from backup.restore import check_by_restore
from client import connect, start_export
from devstack.postgres import PostgresServer
from devstack.stack import DevStack
from tests.dumps import dump


def scratch_databases(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        query = "SELECT datname FROM pg_database WHERE datname LIKE 'export_backup_verify_%'"
        return [row[0] for row in conn.execute(query)]


def test_a_good_backup_passes_its_test_restore(postgres: PostgresServer, tmp_path: Path) -> None:
    outcome = dump(postgres.url(), "acme", tmp_path)
    check = check_by_restore(
        outcome.artifact_path,
        outcome.manifest,
        postgres.url(),
        "export_backup_verify_good",
        pg_bin_dir(),
    )
    assert check.verified, check.describe()
    assert check.tables_restored == check.tables_expected == len(outcome.manifest.row_counts) > 0
    assert scratch_databases(postgres.url()) == []


def test_a_corrupted_artifact_fails_its_test_restore(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Bytes flipped inside the artifact, its checksum updated so that only a restore can tell."""
    outcome = dump(postgres.url(), "acme", tmp_path)
    data = bytearray(outcome.artifact_path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    outcome.artifact_path.write_bytes(bytes(data))
    manifest = outcome.manifest.model_copy(update={"sha256": sha256_of(outcome.artifact_path)})

    check = check_by_restore(
        outcome.artifact_path, manifest, postgres.url(), "export_backup_verify_bad", pg_bin_dir()
    )

    assert not check.verified
    assert check.error and "does not restore" in check.error
    assert scratch_databases(postgres.url()) == []


def test_rows_the_manifest_promised_but_the_artifact_lacks_are_named(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    outcome = dump(postgres.url(), "acme", tmp_path)
    table, rows = sorted(outcome.manifest.row_counts.items())[0]
    counts = {**outcome.manifest.row_counts, table: rows + 1, "acme.ghost": 5}
    manifest = outcome.manifest.model_copy(update={"row_counts": counts})

    check = check_by_restore(
        outcome.artifact_path, manifest, postgres.url(), "export_backup_verify_rows", pg_bin_dir()
    )

    assert not check.verified and check.error is None
    assert f"{table}: {rows + 1} rows in the manifest, {rows} restored" in check.mismatches
    assert "acme.ghost: missing after restore" in check.mismatches


async def test_an_encrypted_backup_with_verify_restore_records_the_verdict_in_its_signed_manifest(
    stack: DevStack, tmp_path: Path
) -> None:
    client: Client = await connect(stack.temporal.address, "default")
    request = ExportRequest(project_id="globex", verify_restore=True)
    result = await (await start_export(client, stack.settings(), request)).result()

    assert result.verification is not None and result.verification.verified
    assert result.verification.tables_restored == result.table_count > 0
    # download() verifies the signature and checksums before the manifest is trusted.
    manifest = await download(result.location, tmp_path / "artifact", stack.settings())
    assert manifest.encryption and manifest.verification == result.verification
    assert scratch_databases(stack.postgres.url()) == []
    history = await client.get_workflow_handle(result.workflow_id).fetch_history()
    assert '"verify_restore_v2"' in json.dumps(history.to_json_dict())  # a step of its own
