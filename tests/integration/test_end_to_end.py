"""End to end on the embedded stack: real PostgreSQL, the Temporal dev server and a worker
process, started from the three clients users have (Python, the `temporal` CLI, TypeScript)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError

from backup.models import DumpFormat, ExportRequest, ExportResult
from backup.pgdump import pg_bin_dir
from backup.restore import restore, row_counts
from client import connect, start_export
from devstack.stack import ROOT, DevStack, demo
from tests.cli_clients import start_by_cli, start_by_typescript

CONTRACT_KEYS = {
    "project_id",
    "location",
    "size_bytes",
    "sha256",
    "table_count",
    "format",
    "compression",
    "started_at",
    "finished_at",
}


@pytest.fixture
async def client(stack: DevStack) -> Client:
    return await connect(stack.temporal.address, "default")


async def backup_on_own_worker(
    stack: DevStack, client: Client, tmp_path: Path, queue: str, project: str, **env: str
) -> ExportResult:
    """One backup through a worker of its own (its queue, host and settings), then stop it."""
    with stack.own_worker(tmp_path, queue, **env) as settings:
        handle = await start_export(client, settings, ExportRequest(project_id=project))
        return await handle.result()


@pytest.fixture
def scratch_db_on_stack(stack: DevStack) -> Iterator[str]:
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    stack.postgres.create_database(name)
    yield stack.postgres.url(name)
    stack.postgres.drop_database(name)


def artifact_of(result: dict[str, Any]) -> Path:
    return Path(unquote(urlparse(result["location"]).path))


async def test_the_demo_backs_up_and_restores(stack: DevStack) -> None:
    assert await demo(stack, "acme", DumpFormat.CUSTOM) == 0


def test_start_from_the_temporal_cli_with_json_input(stack: DevStack) -> None:
    wf_id = f"export-backup-globex-{uuid.uuid4().hex[:8]}"
    started = start_by_cli(
        stack, "ExportBackupWorkflow", wf_id, '{"project_id": "globex", "format": "sql"}'
    )
    assert started.returncode == 0, started.stderr
    done = stack.temporal.cli("workflow", "result", "--workflow-id", wf_id, "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert result.keys() >= CONTRACT_KEYS
    assert result["format"] == "sql" and result["schema_name"] == "tenant_globex"
    artifact = artifact_of(result)
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == result["sha256"]
    assert artifact.stat().st_size == result["size_bytes"]

    query = "ProjectId = 'globex' AND BackupStep = 'completed'"
    listed = stack.temporal.cli("workflow", "list", "--query", query, "--output", "json")
    assert wf_id in listed.stdout


def test_bad_input_from_the_cli_fails_at_once_naming_the_field(stack: DevStack) -> None:
    wf_id = f"export-backup-bad-{uuid.uuid4().hex[:8]}"
    started = start_by_cli(
        stack, "ExportBackupWorkflow", wf_id, '{"project_id": "acme", "format": "zip"}'
    )
    assert started.returncode == 0, started.stderr
    done = stack.temporal.cli("workflow", "result", "--workflow-id", wf_id)
    assert done.returncode != 0
    assert "format" in done.stdout + done.stderr
    shown = stack.temporal.cli(
        "workflow", "show", "--workflow-id", wf_id, "--output", "json"
    ).stdout
    assert '"InvalidRequest"' in shown


def test_start_from_the_typescript_client(stack: DevStack) -> None:
    run = start_by_typescript(stack, "acme", "tar")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result.keys() >= CONTRACT_KEYS and result["format"] == "tar"
    assert artifact_of(result).name.endswith(".tar.zst.age")  # the dev stack encrypts


async def test_a_repeated_request_joins_the_same_backup(stack: DevStack, client: Client) -> None:
    settings = stack.settings()
    request = ExportRequest(project_id="acme", request_id=uuid.uuid4().hex)
    first = await start_export(client, settings, request)
    second = await start_export(client, settings, request)
    assert first.result_run_id == second.result_run_id
    result = await first.result()
    again = await start_export(client, settings, request)  # finished: not redone
    assert again.result_run_id == first.result_run_id
    assert isinstance(result, ExportResult)


async def test_the_web_ui_sees_summary_steps_and_search_attributes(
    stack: DevStack, client: Client
) -> None:
    settings = stack.settings()
    handle = await start_export(client, settings, ExportRequest(project_id="umbrella"))
    await handle.result()
    description = await handle.describe()
    assert await description.static_summary() == "Export backup of project umbrella (custom)"
    attributes = {k.name: v for k, v in description.typed_search_attributes}
    assert attributes["ProjectId"] == "umbrella" and attributes["BackupStep"] == "completed"
    history = await handle.fetch_history()
    # Each step by its summary: a regular activity's on its scheduled event, a local one's on
    # its marker (umbrella is small: one local step dumps and stores it).
    summaries = [
        e.user_metadata.summary.data.decode()
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        or e.HasField("marker_recorded_event_attributes")
    ]
    assert any("Dump, verify and upload schema umbrella" in s for s in summaries), summaries
    ui = httpx.get(stack.temporal.ui_url, timeout=10)
    assert ui.status_code == 200


async def test_metrics_endpoint_exposes_sdk_and_backup_metrics(
    stack: DevStack, client: Client
) -> None:
    handle = await start_export(client, stack.settings(), ExportRequest(project_id="acme"))
    await handle.result()
    body = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10).text
    assert "export_backup_bytes_dumped" in body and "export_backup_bytes_uploaded" in body
    assert "export_backup_step_seconds" in body and 'step="dump"' in body
    # Step durations land in second-scale buckets, not the SDK's millisecond defaults.
    assert re.search(r'export_backup_step_seconds_bucket\{[^}]*le="2.5"', body), body
    assert "temporal_activity_execution_latency" in body


async def test_backup_to_s3_restores_from_its_location(
    stack: DevStack, client: Client, tmp_path: Path
) -> None:
    result = await backup_on_own_worker(
        stack, client, tmp_path, "s3-backups", "umbrella", STORAGE_BACKEND="s3"
    )
    assert result.location.startswith(f"s3://{stack.s3.bucket}/backups/umbrella/")  # type: ignore[union-attr]

    source, restored = await stack.restore_check(result)  # signature, checksum, decryption
    assert source == restored and sum(source.values()) > 0


async def test_a_directory_backup_reports_the_compression_it_holds(
    stack: DevStack, client: Client
) -> None:
    """pg_dump compresses directory members itself, with gzip when its build has no zstd: the
    result must say what the artifact holds, not what was asked for, and restore from it."""
    request = ExportRequest(project_id="acme", format=DumpFormat.DIRECTORY)
    result = await (await start_export(client, stack.settings(), request)).result()
    manifest = json.loads(Path(unquote(urlparse(result.manifest_location).path)).read_text())
    assert result.compression == manifest["compression"] != "none"
    source, restored = await stack.restore_check(result)
    assert source == restored and sum(source.values()) > 0


@pytest.mark.parametrize(("project", "event"), [("acme", "succeeded"), ("initech", "failed")])
async def test_the_user_gets_an_email_and_a_signed_webhook(
    stack: DevStack, client: Client, project: str, event: str
) -> None:
    request = ExportRequest(project_id=project, notify_email="dev@tenant.example")
    handle = await start_export(client, stack.settings(), request)
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()

    mails = [m for m in stack.mailbox if handle.id in m.get_body(("plain",)).get_content()]  # type: ignore[union-attr]
    assert len(mails) == 1, "exactly one email per backup"
    assert mails[0]["To"] == "dev@tenant.example"
    assert (
        f"Backup of {project} {'succeeded' if event == 'succeeded' else 'FAILED'}"
        in mails[0]["Subject"]
    )

    assert stack.webhooks is not None
    hooks = [
        d for d in stack.webhooks.deliveries if json.loads(d.body)["workflow"]["id"] == handle.id
    ]
    assert len(hooks) == 1 and hooks[0].verified
    payload = json.loads(hooks[0].body)
    assert payload["event"] == f"backup.{event}"
    if event == "failed":
        assert (
            payload["failure"]["step"] == "validating"
            and "SUSPENDED" in payload["failure"]["error"]
        )
    else:
        assert payload["backup"]["sha256"] and payload["backup"]["location"]
    assert stack.webhook_secret not in stack.worker_log.read_text(errors="replace")


async def test_encrypted_signed_backup_round_trip(
    stack: DevStack, client: Client, tmp_path: Path, scratch_db_on_stack: str
) -> None:
    """Workers hold only age recipients and the signing key; the restoring side holds an
    identity and the public key. The project's own two recipients replace the deployment's, and
    the standard `age` tool decrypts what the starter downloaded and verified."""
    keys = tmp_path / "keys"
    starter_cli = [sys.executable, str(ROOT / "starter.py")]
    subprocess.run([*starter_cli, "keys", "--out", str(keys)], check=True, capture_output=True)
    recipient = (keys / "age-recipient.txt").read_text().strip()
    other_identity, other_recipient = age_keygen(tmp_path / "other.key")
    deployment_identity, deployment_recipient = age_keygen(tmp_path / "deployment.key")
    project_keys = json.dumps({"acme": [recipient, other_recipient]})
    result = await backup_on_own_worker(
        stack,
        client,
        tmp_path,
        "encrypted",
        "acme",
        ENCRYPTION_RECIPIENTS=deployment_recipient,
        ENCRYPTION_PROJECT_RECIPIENTS=project_keys,
        MANIFEST_SIGNING_KEY_FILE=str(keys / "signing.pem"),
    )
    assert result.location.endswith(".dump.zst.age")
    assert artifact_of(result.model_dump()).read_bytes().startswith(b"age-encryption.org/v1")

    encrypted = tmp_path / "acme.dump.zst.age"
    env = {**os.environ, **stack.env, "MANIFEST_VERIFY_KEY_FILE": str(keys / "signing.pub.pem")}
    download_cmd = [*starter_cli, "download", result.location, "-o", str(encrypted)]
    done = subprocess.run(download_cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    def age_decrypt(identity: Path, out: Path) -> subprocess.CompletedProcess[str]:
        cmd = ["age", "-d", "-i", str(identity), "-o", str(out), str(encrypted)]
        return subprocess.run(cmd, capture_output=True, text=True)

    assert age_decrypt(deployment_identity, tmp_path / "no").returncode != 0  # replaced
    for n, identity in enumerate([keys / "age-identity.txt", other_identity]):
        plain = tmp_path / f"acme-{n}.dump.zst"
        assert age_decrypt(identity, plain).returncode == 0
    restore(plain, result.format, result.compression, scratch_db_on_stack, pg_bin_dir())
    assert row_counts(scratch_db_on_stack, "acme") == row_counts(stack.postgres.url(), "acme")


def age_keygen(path: Path) -> tuple[Path, str]:
    """An identity file from the real `age-keygen`, and its public key."""
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True)
    return path, public.stdout.decode().strip()


def test_a_worker_with_a_bad_age_recipient_refuses_to_start(
    stack: DevStack, tmp_path: Path
) -> None:
    overrides = {
        "TEMPORAL_TASK_QUEUE": "bad-key",
        "HOST_ID": "bad-key",
        "METRICS_PORT": "0",
        "ENCRYPTION_RECIPIENTS": "age1thisisnotakey",
    }
    with pytest.raises(RuntimeError, match="age recipient"):
        stack.spawn_worker(tmp_path / "worker.log", overrides, timeout=30)


async def test_restore_backup_workflow_puts_the_data_back_beside_the_original(
    stack: DevStack, client: Client
) -> None:
    """One command from "my data is gone" to restored tables (and refusals that protect)."""
    backup = await (
        await start_export(client, stack.settings(), ExportRequest(project_id="acme"))
    ).result()
    starter_cli = [sys.executable, str(ROOT / "starter.py"), "restore", backup.location, "--json"]
    schema = f"acme_restored_{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **stack.env}

    done = subprocess.run(
        [*starter_cli, "--into", schema], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verified"] and result["row_counts"] == row_counts(stack.postgres.url(), "acme")
    assert row_counts(stack.postgres.url(), schema) == result["row_counts"]

    again = subprocess.run(
        [*starter_cli, "--into", schema], env=env, capture_output=True, text=True, timeout=180
    )
    assert again.returncode == 1 and "already exists" in again.stderr

    wf_id = f"restore-cli-{uuid.uuid4().hex[:8]}"
    bad = json.dumps({"location": backup.location + "-missing", "into_schema": "x_" + schema})
    started = start_by_cli(stack, "RestoreBackupWorkflow", wf_id, bad)
    assert started.returncode == 0, started.stderr
    failed = stack.temporal.cli("workflow", "result", "--workflow-id", wf_id)
    assert failed.returncode != 0 and "no backup at" in failed.stdout + failed.stderr
