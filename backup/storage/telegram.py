"""Telegram as storage, over the Bot API with httpx.

The cloud Bot API takes 50 MB per upload but `getFile` serves only 20 MB, so a bot could not
read back anything bigger: the artifact goes up in parts of TELEGRAM_PART_BYTES (default 19 MiB),
then a manifest listing every part (message id, file id, size, SHA-256) goes last. The location
names the manifest message, with its file id because a bot can not fetch a message by id.

The token is part of every URL, so it is redacted from every message we raise, and httpx's own
request log (which prints URLs) is kept below INFO.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from backup.errors import IntegrityError, StorageError
from backup.manifest import Manifest, ManifestPart, manifest_name
from backup.retention import StoredBackup
from backup.signing import SIGNATURE_SUFFIX
from backup.storage.base import Fetched, ListingNotSupported, Signer, Stored, Transfer

MIB = 1024 * 1024
CLOUD_API = "https://api.telegram.org"
MAX_RATE_LIMIT_WAITS = 8
NO_RETENTION = (
    "Telegram cannot list a chat's messages, and a bot can delete a message only within 48 hours"
    " of sending it: retention is not applied to chat {chat}; give the chat an auto-delete timer"
    " or delete old backups by hand"
)

logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry the token


class TelegramStorage:
    name = "telegram"

    def __init__(
        self,
        token: str,
        chat_id: str,
        *,
        api_url: str = CLOUD_API,
        message_thread_id: int | None = None,
        part_size: int = 19 * MIB,
        timeout: float = 120.0,
        sign: Signer | None = None,
    ) -> None:
        self._token = token
        self.chat_id = str(chat_id)
        self.api_url = api_url.rstrip("/")
        self.message_thread_id = message_thread_id
        self.part_size = part_size
        self._timeout = timeout
        self._sign = sign

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<TELEGRAM_BOT_TOKEN>")

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        transfer: Transfer,
        label: str = "",
        **fields: Any,
    ) -> Any:
        """One Bot API call; waits out 429s (retry_after) and maps errors to StorageError."""
        files = fields.pop("files", None)
        data = {k: str(v) for k, v in fields.items() if v is not None}
        for _ in range(MAX_RATE_LIMIT_WAITS):
            try:
                response = await client.post(
                    f"{self.api_url}/bot{self._token}/{method}", data=data, files=files
                )
            except httpx.HTTPError as err:
                raise StorageError(self._redact(f"Telegram {method}: {err!r}")) from None
            transfer.requests.append(f"{method}({label})" if label else method)
            try:
                body = response.json()
            except ValueError:
                body = {"description": response.text[:200]}
            if response.status_code == 429:
                wait = float(body.get("parameters", {}).get("retry_after", 1))
                await asyncio.sleep(wait)
                continue
            if body.get("ok"):
                return body["result"]
            raise self._error(method, response.status_code, str(body.get("description", "")))
        raise StorageError(
            f"Telegram {method}: still rate limited after {MAX_RATE_LIMIT_WAITS} waits"
        )

    def _error(self, method: str, status: int, description: str) -> StorageError:
        what = f"Telegram {method}: {status} {self._redact(description)}"
        if status == 401:
            return StorageError(f"{what}: TELEGRAM_BOT_TOKEN is not valid", retryable=False)
        if status in (400, 403) and "chat" in description.lower():
            return StorageError(
                f"{what}: check TELEGRAM_CHAT_ID and that the bot is a member allowed to post",
                retryable=False,
            )
        if status == 413 or "too big" in description.lower():
            return StorageError(
                f"{what}: lower TELEGRAM_PART_BYTES (cloud Bot API: 50 MB upload, 20 MB download)",
                retryable=False,
            )
        return StorageError(what, retryable=status >= 500)

    async def store(
        self, artifact: Path, manifest: Manifest, key: str, transfer: Transfer
    ) -> Stored:
        size = artifact.stat().st_size
        count = max(1, math.ceil(size / self.part_size))
        parts = self._resumable_parts(key, transfer)
        name = Path(key).name
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            for index in range(len(parts), count):
                data = await asyncio.to_thread(_read_part, artifact, index, self.part_size)
                message = await self._call(
                    client, "sendDocument", transfer, str(index + 1),
                    chat_id=self.chat_id, message_thread_id=self.message_thread_id,
                    caption=f"{name} part {index + 1}/{count}",
                    files={"document": (f"{name}.part{index + 1:03d}", data)},
                )  # fmt: skip
                parts.append(
                    ManifestPart(
                        index=index,
                        size_bytes=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                        message_id=message["message_id"],
                        file_id=message["document"]["file_id"],
                    )
                )
                transfer.checkpoint({"key": key, "part_size": self.part_size,
                                     "parts": [p.model_dump() for p in parts]})  # fmt: skip
                transfer.on_progress(sum(p.size_bytes for p in parts))
            complete = manifest.model_copy(update={"parts": parts})
            raw = complete.to_bytes()
            signature_id = ""
            if self._sign:  # a bot can not fetch a message by id: the location carries file ids
                signed = await self._call(
                    client, "sendDocument", transfer,
                    chat_id=self.chat_id, message_thread_id=self.message_thread_id,
                    caption=f"signature of the manifest of {name}",
                    files={"document": (manifest_name(name) + SIGNATURE_SUFFIX, self._sign(raw))},
                )  # fmt: skip
                signature_id = f"&sig_file_id={signed['document']['file_id']}"
            message = await self._call(
                client, "sendDocument", transfer,
                chat_id=self.chat_id, message_thread_id=self.message_thread_id,
                caption=f"export-backup manifest of {manifest.project_id}: {count} part(s), "
                f"sha256 {manifest.sha256}",
                files={"document": (manifest_name(name), raw)},
            )  # fmt: skip
        location = (
            f"telegram://{self.chat_id}/{message['message_id']}"
            f"?file_id={message['document']['file_id']}{signature_id}"
        )
        return Stored(location, location)

    def _resumable_parts(self, key: str, transfer: Transfer) -> list[ManifestPart]:
        state = transfer.resume
        if not state or state.get("key") != key or state.get("part_size") != self.part_size:
            return []
        return [ManifestPart.model_validate(p) for p in state.get("parts", [])]

    async def fetch(self, location: str, destination: Path, transfer: Transfer) -> Fetched:
        manifest_file_id, signature_file_id = _file_ids(location)
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            raw = await self._download(client, manifest_file_id, transfer)
            signature = None
            if signature_file_id:
                signature = await self._download(client, signature_file_id, transfer)
            manifest = Manifest.model_validate_json(raw)
            if not manifest.parts:
                raise IntegrityError(f"the manifest at {location} lists no parts")
            done = 0
            with destination.open("wb") as out:
                for part in sorted(manifest.parts, key=lambda p: p.index):
                    data = await self._download(client, part.file_id, transfer)
                    if hashlib.sha256(data).hexdigest() != part.sha256:
                        raise IntegrityError(f"part {part.index + 1} of {location} is corrupted")
                    out.write(data)
                    done += len(data)
                    transfer.on_progress(done)
        return Fetched(manifest, raw, signature)

    async def _download(self, client: httpx.AsyncClient, file_id: str, transfer: Transfer) -> bytes:
        info = await self._call(client, "getFile", transfer, file_id=file_id)
        try:
            response = await client.get(f"{self.api_url}/file/bot{self._token}/{info['file_path']}")
            response.raise_for_status()
        except httpx.HTTPError as err:
            raise StorageError(self._redact(f"Telegram file download: {err!r}")) from None
        return response.content

    async def abort_incomplete(self, key: str) -> int:
        """Nothing stays half-uploaded in Telegram: each part is a whole message. Parts of a run
        that never completed stay in the chat (they are listed in its checkpoint)."""
        return 0

    async def list_backups(self, project_id: str) -> list[StoredBackup]:
        """The Bot API has no method that lists a chat's messages (getUpdates only brings new
        ones, and only to a bot without a webhook), so there is nothing to apply retention to."""
        raise ListingNotSupported(NO_RETENTION.format(chat=self.chat_id))

    async def delete_backup(self, backup: StoredBackup) -> None:
        """Delete the messages whose ids are `backup.keys` (the parts' ids are in the manifest).
        Telegram lets a bot delete only messages younger than 48 hours: an older one is a
        non-retryable error, because waiting never makes it deletable."""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            for message_id in backup.keys:
                try:
                    await self._call(
                        client, "deleteMessage", Transfer(), chat_id=self.chat_id,
                        message_id=message_id,
                    )  # fmt: skip
                except StorageError as err:
                    text = str(err).lower()
                    if "message to delete not found" in text:
                        continue  # already gone: deleting again is not an error
                    if "can't be deleted" in text:
                        raise StorageError(
                            f"Telegram refused to delete message {message_id} of chat "
                            f"{self.chat_id}: bots can delete only messages younger than 48 "
                            "hours; delete it by hand or give the chat an auto-delete timer",
                            retryable=False,
                        ) from None
                    raise


def _read_part(path: Path, index: int, part_size: int) -> bytes:
    with path.open("rb") as f:
        return os.pread(f.fileno(), part_size, index * part_size)


def _file_ids(location: str) -> tuple[str, str | None]:
    """The manifest's file id and, when signed, its signature's."""
    parsed = urlparse(location)
    query = parse_qs(parsed.query)
    file_id = query.get("file_id", [""])[0]
    if parsed.scheme != "telegram" or not file_id:
        raise StorageError(
            f"{location!r} is not a telegram://CHAT/MESSAGE?file_id=... location", retryable=False
        )
    return file_id, query.get("sig_file_id", [None])[0]
