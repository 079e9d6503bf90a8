"""What a person sees in the Temporal Web UI, checked in a real browser: Debian's headless
Chromium driven by Playwright, against the dev stack's own Web UI and worker.

Screenshots go to tmp/artifacts/browser/ (the best ones are in docs/images/).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    Page,
    Response,
    async_playwright,
    expect,
)
from temporalio.client import WorkflowHandle

from backup.models import ExportRequest, ExportResult
from backup.settings import Settings
from client import connect_with, start_export
from client.codec import EncryptionCodec
from codec_server import serve
from devstack.ports import free_port
from devstack.process import stop_process
from devstack.stack import DevStack
from devstack.temporal import TemporalDevServer
from tests.browser import (
    BROWSER_TIMEOUT_MS,
    CHROMIUM,
    chromium_args,
    eventually,
    page_text,
    shoot,
)
from workflows.search_attributes import BACKUP_STEP

pytestmark = pytest.mark.timeout(300)
# `expect` has its own 5 s default, which a loaded 2-core machine misses now and then.
expect.set_options(timeout=BROWSER_TIMEOUT_MS)

EMAIL = "ui-reader@tenant.example"  # in the input only: visible only when decoded


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no {CHROMIUM}: `make chromium` installs Debian's chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=chromium_args(), headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    opened = await context.new_page()
    yield opened
    await context.close()


def workflow_url(ui: str, handle: WorkflowHandle[Any, Any]) -> str:
    return f"{ui}/namespaces/default/workflows/{handle.id}/{handle.result_run_id}"


def settings_with(stack: DevStack, overrides: dict[str, str]) -> Settings:
    """What a starter configured like a worker with `overrides` uses."""
    env = {**stack.env, **overrides}
    return Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]


async def backup(settings: Settings, project: str, **request: Any) -> WorkflowHandle[Any, Any]:
    client = await connect_with(settings)
    return await start_export(client, settings, ExportRequest(project_id=project, **request))


async def test_workflow_list_filtered_by_project(stack: DevStack, page: Page) -> None:
    settings = stack.settings()
    acme = await backup(settings, "acme")
    globex = await backup(settings, "globex")
    await acme.result()
    await globex.result()

    query = 'ProjectId="acme"'
    await page.goto(f"{stack.temporal.ui_url}/namespaces/default/workflows?query={query}")
    rows = page.get_by_role("link", name=re.compile(r"^export-backup-"))
    await expect(page.get_by_role("link", name=acme.id)).to_be_visible()
    await eventually(lambda: rows.count(), lambda n: n > 0)
    listed = await rows.all_inner_texts()
    assert all(name.startswith("export-backup-acme-") for name in listed), listed
    assert globex.id not in listed
    await shoot(page, "workflow-list-by-project")


@pytest.fixture
def stuck_upload_worker(
    stack: DevStack, tmp_path: Path
) -> Iterator[tuple[Settings, subprocess.Popen[bytes]]]:
    """A worker of its own whose S3 refuses every connection: its backups dump, then stay in the
    store step (verifying, then retrying the upload), so the page of a running backup can be
    looked at."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed
    queue = "ui-stuck-upload"
    overrides = {
        "TEMPORAL_TASK_QUEUE": queue,
        "HOST_ID": "ui-stuck-upload",
        "SPOOL_DIR": str(tmp_path / "spool"),
        "METRICS_PORT": "0",
        "STORAGE_BACKEND": "s3",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "S3_BUCKET": "backups",
        "SMALL_SCHEMA_MAX_BYTES": "0",  # the pinned steps, whose activities the page lists
    }
    worker = stack.spawn_worker(tmp_path / "worker.log", overrides)
    yield settings_with(stack, overrides), worker
    stop_process(worker, timeout=30)


async def test_running_backup_shows_summary_step_bytes_and_activities(
    stack: DevStack, page: Page, stuck_upload_worker: tuple[Settings, subprocess.Popen[bytes]]
) -> None:
    settings, _ = stuck_upload_worker
    handle = await backup(settings, "acme")
    try:

        async def step() -> str | None:
            attributes = (await handle.describe()).typed_search_attributes
            return attributes.get(BACKUP_STEP)

        await eventually(step, lambda s: s == "uploading", timeout=60)
        await page.goto(workflow_url(stack.temporal.ui_url, handle))
        await expect(page.get_by_text(re.compile("^running$", re.I)).first).to_be_visible()
        # The timeline: each scheduled activity by its summary, the store step (verify, upload,
        # remove the spool) still running (validating the project is a local activity since
        # the local-steps patch, verify part of the store step since store-step).
        for summary in (
            "Dump schema acme (custom, zstd)",
            "store_artifact • Verify and upload",
        ):
            await expect(page.get_by_text(summary, exact=False).first).to_be_visible()
        await shoot(page, "running-backup")

        await page.get_by_role("tab", name=re.compile("User Metadata")).click()
        text = await eventually(
            lambda: page_text(page), lambda t: "Step: uploading" in t and "dumped)" in t
        )
        assert "Export backup of project acme (custom)" in text  # the summary
        assert re.search(r"Artifact: \d+ bytes \(\d+ dumped\)", text), text
        await shoot(page, "running-backup-current-details")

        await page.get_by_role("tab", name=re.compile("Pending Activities")).click()
        await expect(page.get_by_text("store_artifact").first).to_be_visible()
        # Its last failure, once the first attempt has given up (the UI refreshes by itself).
        await eventually(lambda: page_text(page), lambda t: "unreachable" in t, timeout=90)
        await shoot(page, "running-backup-pending-upload")
    finally:
        await handle.terminate("browser test done")


async def test_failed_backup_shows_step_and_reason(stack: DevStack, page: Page) -> None:
    handle = await backup(stack.settings(), "initech")  # SUSPENDED: refused at validation
    with pytest.raises(Exception):  # noqa: B017 - WorkflowFailureError
        await handle.result()
    await page.goto(workflow_url(stack.temporal.ui_url, handle))
    await expect(page.get_by_text(re.compile("^failed$", re.I)).first).to_be_visible()
    reason = "failed during validating: project 'initech' is SUSPENDED"
    await expect(page.get_by_text(reason, exact=False).first).to_be_visible()
    await shoot(page, "failed-backup")


# --- payload encryption: the codec server --------------------------------------------------


KEY = base64.b64encode(os.urandom(32)).decode()
TOKEN = "browser-test-token"


@pytest.fixture(scope="module")
def encrypted(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TemporalDevServer, Settings]]:
    """A Temporal dev server whose Web UI decodes through the codec server (bearer token,
    CORS for the UI's origin), and a worker with the payload key."""
    home = tmp_path_factory.mktemp("encrypted")
    codec_port = free_port()
    temporal = TemporalDevServer(
        home / "temporal.db", codec_endpoint=f"http://127.0.0.1:{codec_port}"
    )
    codec = serve(EncryptionCodec.from_base64(KEY), codec_port, temporal.ui_url, TOKEN)
    threading.Thread(target=codec.serve_forever, daemon=True).start()
    temporal.start()
    overrides = {
        "TEMPORAL_ADDRESS": temporal.address,
        "TEMPORAL_TASK_QUEUE": "ui-encrypted",
        "HOST_ID": "ui-encrypted",
        "SPOOL_DIR": str(home / "spool"),
        "METRICS_PORT": "0",
        "PAYLOAD_ENCRYPTION_KEY": KEY,
    }
    worker = stack.spawn_worker(home / "worker.log", overrides)
    try:
        yield temporal, settings_with(stack, overrides)
    finally:
        stop_process(worker, timeout=30)
        temporal.stop()
        codec.shutdown()
        codec.server_close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
async def encrypted_backup(
    encrypted: tuple[TemporalDevServer, Settings],
) -> tuple[WorkflowHandle[Any, Any], ExportResult]:
    _, settings = encrypted
    handle = await backup(settings, "acme", notify_email=EMAIL)
    result = await handle.result()
    raw = await handle.fetch_history()
    assert EMAIL not in raw.to_json()  # the history holds ciphertext only
    return handle, result


OpenPage = Callable[[str], contextlib.AbstractAsyncContextManager[tuple[Page, list[int]]]]


@pytest.fixture
def open_encrypted_backup(
    browser: Browser,
    encrypted: tuple[TemporalDevServer, Settings],
    encrypted_backup: tuple[WorkflowHandle[Any, Any], ExportResult],
) -> OpenPage:
    """Opens the encrypted backup's page in a browser whose requests carry `Authorization:
    Bearer <token>`, as an SSO proxy in front of the codec server would add it; yields the page
    and the codec server's answers it saw."""
    temporal, _ = encrypted
    handle, _ = encrypted_backup

    @contextlib.asynccontextmanager
    async def open_page(token: str) -> AsyncIterator[tuple[Page, list[int]]]:
        context = await browser.new_context(
            viewport={"width": 1400, "height": 1000},
            extra_http_headers={"Authorization": f"Bearer {token}"},
        )
        context.set_default_timeout(BROWSER_TIMEOUT_MS)
        try:
            page = await context.new_page()
            statuses: list[int] = []

            def seen(response: Response) -> None:
                if urlsplit(response.url).path == "/decode":
                    statuses.append(response.status)

            page.on("response", seen)
            await page.goto(workflow_url(temporal.ui_url, handle))
            yield page, statuses
        finally:
            await context.close()

    return open_page


async def test_codec_server_decodes_input_and_result_for_the_ui(
    open_encrypted_backup: OpenPage,
    encrypted_backup: tuple[WorkflowHandle[Any, Any], ExportResult],
) -> None:
    _, result = encrypted_backup
    async with open_encrypted_backup(TOKEN) as (page, statuses):
        await expect(page.get_by_text(EMAIL, exact=False).first).to_be_visible()  # input
        await expect(page.get_by_text(result.location, exact=False).first).to_be_visible()
        assert 200 in statuses and 401 not in statuses
        await shoot(page, "encrypted-decoded")


async def test_wrong_token_shows_ciphertext(
    open_encrypted_backup: OpenPage,
    encrypted_backup: tuple[WorkflowHandle[Any, Any], ExportResult],
) -> None:
    handle, result = encrypted_backup
    async with open_encrypted_backup("not-the-token") as (page, statuses):
        await eventually(lambda: statuses, lambda answers: 401 in answers)
        # The input as the history holds it: the ciphertext, base64 as the UI prints bytes.
        history = await handle.fetch_history()
        sealed = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
        assert sealed.metadata["encoding"] == b"binary/encrypted"
        text = await eventually(
            lambda: page_text(page), lambda t: base64.b64encode(sealed.data).decode()[:40] in t
        )
        assert "Codec Server could not connect" in text  # the UI says why
        assert EMAIL not in text and result.location not in text
        await shoot(page, "encrypted-wrong-token")
