"""Telegram parts are streamed, both ways: memory does not grow with TELEGRAM_PART_BYTES (a
self-hosted Bot API server takes parts up to 2000 MB). A transport of our own stands in for the
server here: the stand-in and httpx's MockTransport both read every body whole into this
process's memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from backup import telegram_bot
from backup.manifest import ManifestPart
from backup.storage import Transfer
from backup.storage.telegram import TelegramStorage
from tests.backends import CHAT, KEY, MIB, TOKEN, artifact

PART = 48 * MIB
LIMIT = 16 * MIB  # peak traced memory allowed: a third of one part


class Server(httpx.AsyncBaseTransport):
    """Takes sendDocument bodies without keeping them and serves files from disk in chunks."""

    def __init__(self, files: dict[str, bytes | Path]) -> None:
        self.files = files
        self.received = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        if method == "sendDocument":
            async for chunk in request.stream:  # type: ignore[union-attr]
                self.received += len(chunk)
            result = {"message_id": 1, "document": {"file_id": "part"}}
            return httpx.Response(200, json={"ok": True, "result": result})
        if method == "getFile":
            file_id = parse_qs((await request.aread()).decode())["file_id"][0]
            return httpx.Response(200, json={"ok": True, "result": {"file_path": file_id}})
        content = self.files[method]
        if isinstance(content, Path):
            return httpx.Response(200, content=_chunks(content))
        return httpx.Response(200, content=content)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            yield chunk


def _through(monkeypatch: pytest.MonkeyPatch, server: Server) -> None:
    real = httpx.AsyncClient

    def client(**options: Any) -> httpx.AsyncClient:
        return real(transport=server, **options)

    monkeypatch.setattr(telegram_bot.httpx, "AsyncClient", client)


async def _peak(action: Any) -> int:
    tracemalloc.start()
    try:
        await action
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_large_part_goes_up_and_comes_down_without_being_held_in_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source, manifest = artifact(tmp_path, PART)
    storage = TelegramStorage(TOKEN, str(CHAT), api_url="http://bot-api.test", part_size=PART)
    part = ManifestPart(index=0, size_bytes=PART, sha256=manifest.sha256, message_id=1, file_id="p")
    stored_manifest = manifest.model_copy(update={"parts": [part]}).to_bytes()
    server = Server({"manifest": stored_manifest, "p": source})
    _through(monkeypatch, server)

    sent = await _peak(storage.store(source, manifest, KEY, Transfer()))
    assert server.received > PART  # the part and the manifest went through the mock
    location = f"telegram://{CHAT}/1?file_id=manifest"
    fetched = tmp_path / "fetched"
    received = await _peak(storage.fetch(location, fetched, Transfer()))

    assert fetched.read_bytes() == source.read_bytes()
    assert sent < LIMIT, f"upload peaked at {sent / MIB:.0f} MiB of traced memory"
    assert received < LIMIT, f"download peaked at {received / MIB:.0f} MiB of traced memory"
