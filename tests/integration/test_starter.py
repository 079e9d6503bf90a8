"""starter.py as people run it (a process, output piped), the TypeScript client and the README's
`temporal` CLI recipe, on the embedded stack: what each prints and how it exits when things go
wrong, and that every way of starting a backup gets the same summary and id policies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from temporalio.client import Client

from backup.manifest import manifest_name
from backup.models import ExportRequest
from backup.signing import SIGNATURE_SUFFIX, generate_keypair
from client import connect, start_export
from devstack.stack import ROOT, DevStack
from tests.cli_clients import start_by_cli, start_by_typescript

STARTER = [sys.executable, str(ROOT / "starter.py")]


@pytest.fixture
async def client(stack: DevStack) -> Client:
    return await connect(stack.temporal.address, "default")


def starter(
    stack: DevStack, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """starter.py with the stack's configuration, stdout and stderr piped (not a terminal)."""
    return subprocess.run(
        [*STARTER, *args],
        env=env or {**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def one_line(text: str) -> str:
    """Rich wraps to 80 columns when piped; compare messages without the wrapping."""
    return " ".join(text.split())


def path_of(location: str) -> Path:
    return Path(unquote(urlparse(location).path))


# --- download: say whether the signature was checked ----------------------------------------


@pytest.fixture
async def stored_copies(stack: DevStack, client: Client, tmp_path: Path) -> dict[str, str]:
    """A signed stack backup copied, with and without its signature, under a storage root of
    the test's own (so other tests' retention can not prune it): name -> file:// location."""
    handle = await start_export(client, stack.settings(), ExportRequest(project_id="acme"))
    result = await handle.result()
    source = path_of(result.location)
    manifest = source.with_name(manifest_name(source.name))
    locations = {}
    for name in ("signed", "unsigned"):
        folder = tmp_path / "storage" / "backups" / name
        folder.mkdir(parents=True)
        shutil.copy(source, folder / source.name)
        shutil.copy(manifest, folder / manifest.name)
        if name == "signed":
            signature = manifest.with_name(manifest.name + SIGNATURE_SUFFIX)
            shutil.copy(signature, folder / signature.name)
        locations[name] = (folder / source.name).as_uri()
    return locations


def download_env(stack: DevStack, tmp_path: Path) -> dict[str, str]:
    """The stack's environment without any manifest key, reading the test's storage root."""
    env = {**os.environ, **stack.env, "LOCAL_STORAGE_DIR": str(tmp_path / "storage")}
    for name in ("MANIFEST_VERIFY_KEY_FILE", "MANIFEST_SIGNING_KEY_FILE"):
        env.pop(name)
    return env


async def test_download_says_plainly_whether_the_signature_was_checked(
    stack: DevStack, stored_copies: dict[str, str], tmp_path: Path
) -> None:
    env = download_env(stack, tmp_path)
    out = tmp_path / "out"

    unchecked = starter(stack, "download", stored_copies["signed"], "-o", str(out), env=env)
    assert unchecked.returncode == 0, unchecked.stderr
    text = one_line(unchecked.stderr)
    assert "signature NOT checked: no verify key (pass --verify-key or set " in text
    assert "MANIFEST_VERIFY_KEY_FILE)" in text and "signature verified" not in text
    out.unlink()

    refused = starter(
        stack, "download", stored_copies["signed"], "-o", str(out), "--require-signature", env=env
    )
    assert refused.returncode == 2
    assert "--require-signature, but there is no verify key" in one_line(refused.stderr)
    assert "Traceback" not in refused.stderr and not out.exists()

    key = stack.keys.verify_key_file
    checked = starter(
        stack,
        "download",
        stored_copies["signed"],
        "-o",
        str(out),
        "--verify-key",
        str(key),
        "--require-signature",
        env=env,
    )
    assert checked.returncode == 0, checked.stderr
    assert f"signature verified with {key}" in one_line(checked.stderr)
    assert "NOT checked" not in checked.stderr

    # The settings' key is named too.
    configured = {**env, "MANIFEST_VERIFY_KEY_FILE": str(key)}
    out.unlink()
    done = starter(stack, "download", stored_copies["signed"], "-o", str(out), env=configured)
    assert done.returncode == 0, done.stderr
    assert f"signature verified with MANIFEST_VERIFY_KEY_FILE {key}" in one_line(done.stderr)


async def test_download_with_a_key_refuses_unsigned_and_wrongly_signed_manifests(
    stack: DevStack, stored_copies: dict[str, str], tmp_path: Path
) -> None:
    env = download_env(stack, tmp_path)
    other_key = tmp_path / "other.pub.pem"
    other_key.write_bytes(generate_keypair()[1])
    cases = [
        (stored_copies["unsigned"], stack.keys.verify_key_file, "the manifest is not signed"),
        (stored_copies["signed"], other_key, "the manifest signature does not verify"),
    ]
    for location, key, reason in cases:
        out = tmp_path / "out"
        refused = starter(
            stack, "download", location, "-o", str(out), "--verify-key", str(key), env=env
        )
        assert refused.returncode == 1, refused.stderr
        assert "download refused" in refused.stderr and reason in one_line(refused.stderr)
        assert not out.exists() and not list(tmp_path.glob("out*"))


def test_download_with_an_unreadable_key_exits_2(stack: DevStack, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    done = starter(
        stack,
        "download",
        "file:///nowhere",
        "-o",
        str(tmp_path / "out"),
        "--verify-key",
        str(missing),
    )
    assert done.returncode == 2
    assert "can not read the verify key" in one_line(done.stderr) and "Traceback" not in done.stderr


# --- status, list, export ------------------------------------------------------------------


def test_status_of_an_unknown_workflow_is_one_line_naming_it(stack: DevStack) -> None:
    wf_id = f"export-backup-nobody-{uuid.uuid4().hex[:12]}"
    done = starter(stack, "status", wf_id)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "RPCError" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"no workflow {wf_id!r} in namespace default (see: starter.py list)"
    ]


async def test_list_piped_keeps_long_workflow_ids_whole(stack: DevStack, client: Client) -> None:
    request = ExportRequest(project_id="globex", request_id="r" * 64)  # the longest request id
    handle = await start_export(client, stack.settings(), request)
    await handle.result()
    assert len(handle.id) > 80
    done = starter(stack, "list", "--project", "globex", "--limit", "500")
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0][:2] == ["WORKFLOW", "ID"]
    listed = {row[0]: row[1:] for row in rows[1:]}
    assert listed[handle.id][0] == "COMPLETED" and listed[handle.id][-1] == "completed"
    # What list prints is what status takes.
    assert starter(stack, "status", handle.id, "--json").returncode == 0


def test_export_json_reports_a_failure_as_json(stack: DevStack) -> None:
    done = starter(stack, "export", "--project", "initech", "--follow", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["workflow_id"].startswith("export-backup-initech-") and report["run_id"]
    assert report["status"] == "FAILED"
    assert report["error_type"] == "ProjectInactive" and report["failed_step"] == "validating"
    assert "SUSPENDED" in report["message"]

    # status of the same run reports it the same way.
    status = starter(stack, "status", report["workflow_id"])
    assert status.returncode == 1 and json.loads(status.stdout) == report

    invalid = starter(stack, "export", "--project", "acme", "--request-id", "no spaces", "--json")
    assert invalid.returncode == 2
    refused = json.loads(invalid.stdout)
    assert refused["status"] == "INVALID_REQUEST" and refused["workflow_id"] is None
    assert "request_id" in refused["message"]


def test_export_compression_flag(stack: DevStack) -> None:
    runs = {
        compression: subprocess.Popen(
            [
                *STARTER,
                "export",
                "--project",
                "acme",
                "--compression",
                compression,
                "--follow",
                "--json",
            ],
            env={**os.environ, **stack.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for compression in ("gzip", "none")
    }
    results: dict[str, Any] = {}
    for compression, process in runs.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr
        results[compression] = json.loads(stdout)
    assert results["gzip"]["compression"] == "gzip"
    assert ".dump.gz" in results["gzip"]["location"]
    assert results["none"]["compression"] == "none"
    assert ".dump.zst" not in results["none"]["location"]
    assert ".dump.gz" not in results["none"]["location"]


# --- every client: the summary and the id policies of starter.py ----------------------------


def test_typescript_client_sets_the_summary_and_joins_a_repeated_request(
    stack: DevStack,
) -> None:
    request_id = uuid.uuid4().hex[:12]
    runs = []
    for _ in range(2):  # the second start finds the first completed: its result, no new run
        run = start_by_typescript(stack, "globex", "sql", request_id)
        assert run.returncode == 0, run.stderr
        runs.append(run)
    results = [json.loads(run.stdout) for run in runs]
    assert results[0]["workflow_id"] == f"export-backup-globex-{request_id}"
    assert results[0]["run_id"] == results[1]["run_id"]
    assert "already completed" in runs[1].stderr
    described = stack.temporal.cli(
        "workflow",
        "describe",
        "--workflow-id",
        results[0]["workflow_id"],
        "--output",
        "json",
    )
    assert described.returncode == 0, described.stderr
    assert "Export backup of project globex (sql)" in described.stdout


def test_the_readme_cli_recipe_sets_the_summary_and_the_id_policies(stack: DevStack) -> None:
    """The recipe proposed for README "Starting a backup" (temporal CLI)."""
    wf_id = f"export-backup-acme-req-{uuid.uuid4().hex[:8]}"
    start = [
        "--static-summary",
        "Export backup of project acme (custom)",
        "--id-conflict-policy",
        "UseExisting",
        "--id-reuse-policy",
        "AllowDuplicateFailedOnly",
        "--output",
        "json",
    ]

    def start_by_recipe() -> subprocess.CompletedProcess[str]:
        return start_by_cli(stack, "ExportBackupWorkflow", wf_id, '{"project_id": "acme"}', *start)

    first, second = start_by_recipe(), start_by_recipe()  # the second joins the running one
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout)["runId"] == json.loads(second.stdout)["runId"]
    done = stack.temporal.cli("workflow", "result", "--workflow-id", wf_id, "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert result["run_id"] == json.loads(first.stdout)["runId"]

    again = start_by_recipe()  # completed: the CLI hands back that run, none is started
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["runId"] == result["run_id"]
    runs = stack.temporal.cli(
        "workflow", "list", "--query", f"WorkflowId = '{wf_id}'", "--output", "json"
    )
    assert runs.returncode == 0 and len(json.loads(runs.stdout)) == 1, runs.stdout + runs.stderr
    described = stack.temporal.cli(
        "workflow", "describe", "--workflow-id", wf_id, "--output", "json"
    )
    assert "Export backup of project acme (custom)" in described.stdout
