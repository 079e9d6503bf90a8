"""Telegram as storage, over the Bot API (backup.telegram_bot).

The cloud Bot API takes 50 MB per upload but `getFile` serves only 20 MB, so a bot could not
read back anything bigger: the artifact goes up in parts of TELEGRAM_PART_BYTES (default 19 MiB),
then a manifest listing every part (message id, file id, size, SHA-256) goes last. The location
names the manifest message, with its file id because a bot can not fetch a message by id. Parts
stream from the spool file and downloads stream to disk: memory does not grow with the part size.

Every message sent (parts, signature, manifest) is checkpointed, so a retry does not post it
again. The Bot API has no idempotency key: a part whose answer was lost (timeout, 5xx after
Telegram stored it) is posted again by the retry, and the manifest names only that copy.

Bot API calls, the 429 policy and the token's redaction are backup.telegram_bot's.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlparse

from backup import layout
from backup.errors import (
    ConfigurationError,
    IntegrityError,
    ListingNotSupported,
    StorageError,
    UnknownFile,
)
from backup.layout import StoredBackup
from backup.manifest import Manifest, ManifestPart
from backup.storage.base import (
    Fetched,
    PartReader,
    Signer,
    Stored,
    Transfer,
    hash_range,
)
from backup.telegram_bot import CLOUD_API, BotApi, BotApiError

MIB = 1024 * 1024
# The cloud's getFile limit, "20MB": the Bot API server's code has 20 << 20, but the decimal
# reading is the stricter one, and the test stand-in enforces it too.
CLOUD_DOWNLOAD_LIMIT = 20 * 1000 * 1000
SELF_HOSTED_LIMIT = 2000 * 1000 * 1000  # a local Bot API server's upload limit
MAX_RATE_LIMIT_WAIT = 600.0  # seconds of 429 waits per call: an upload has hours, and heartbeats
NO_RETENTION = (
    "Telegram cannot list a chat's messages, and a bot can delete a message only within 48 hours"
    " of sending it: retention is not applied to chat {chat}; give the chat an auto-delete timer"
    " or delete old backups by hand"
)


def is_cloud(api_url: str) -> bool:
    return urlparse(api_url).hostname == urlparse(CLOUD_API).hostname


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
        if part_size > self.max_part_size:
            raise ConfigurationError(
                f"TELEGRAM_PART_BYTES={part_size} is above the {CLOUD_DOWNLOAD_LIMIT} bytes the "
                f"cloud Bot API serves back through getFile (TELEGRAM_API_URL={self.api_url}): "
                f"set TELEGRAM_PART_BYTES to at most {CLOUD_DOWNLOAD_LIMIT} (default 19 MiB), or "
                "point TELEGRAM_API_URL at a self-hosted Bot API server (parts up to 2000 MB)"
                if is_cloud(self.api_url)
                else f"TELEGRAM_PART_BYTES={part_size} is above the {SELF_HOSTED_LIMIT} bytes a "
                f"self-hosted Bot API server (TELEGRAM_API_URL={self.api_url}) takes"
            )

    @property
    def max_part_size(self) -> int:
        return CLOUD_DOWNLOAD_LIMIT if is_cloud(self.api_url) else SELF_HOSTED_LIMIT

    def _bot(self) -> BotApi:
        return BotApi(
            self._token, self.api_url, timeout=self._timeout, max_wait=MAX_RATE_LIMIT_WAIT
        )

    async def _call(
        self, bot: BotApi, method: str, transfer: Transfer, label: str = "", **fields: Any
    ) -> Any:
        """One Bot API call (429s waited out by the client), its errors as StorageError."""
        failure = None
        try:
            return await bot.call(
                method,
                on_answer=lambda: transfer.requests.append(
                    f"{method}({label})" if label else method
                ),
                **fields,
            )
        except BotApiError as err:
            failure = err
        raise self._error(method, failure)  # outside the except block: no context rides along

    def _error(self, method: str, err: BotApiError) -> StorageError:
        if err.status is None or err.status == 429:
            return StorageError(str(err), retryable=err.retryable)
        status, description = err.status, err.description
        what = f"Telegram {method}: {status} {description}"
        lowered = description.lower()
        if status == 401:
            return StorageError(f"{what}: TELEGRAM_BOT_TOKEN is not valid", retryable=False)
        if status == 400 and ("invalid file_id" in lowered or "wrong file identifier" in lowered):
            return UnknownFile(f"{what}: Telegram does not know this file (message deleted?)")
        if status in (400, 403) and "chat" in lowered:
            return StorageError(
                f"{what}: check TELEGRAM_CHAT_ID and that the bot is a member allowed to post",
                retryable=False,
            )
        if status == 413 or "too big" in lowered:
            return StorageError(
                f"{what}: lower TELEGRAM_PART_BYTES (cloud Bot API: 50 MB upload, 20 MB download)",
                retryable=False,
            )
        return StorageError(what, retryable=err.retryable)

    async def _send(
        self,
        bot: BotApi,
        transfer: Transfer,
        label: str,
        caption: str,
        file_name: str,
        body: bytes | io.RawIOBase,
    ) -> dict[str, Any]:
        """sendDocument; returns the message id and file id of what Telegram stored."""
        message = await self._call(
            bot,
            "sendDocument",
            transfer,
            label,
            chat_id=self.chat_id,
            message_thread_id=self.message_thread_id,
            caption=caption,
            files={"document": (file_name, body)},
        )
        return {"message_id": message["message_id"], "file_id": message["document"]["file_id"]}

    async def store(
        self, artifact: Path, manifest: Manifest, key: str, transfer: Transfer
    ) -> Stored:
        size = artifact.stat().st_size
        state = self._resumable(key, manifest.sha256, transfer)
        part_size = state["part_size"]
        parts = [ManifestPart.model_validate(p) for p in state["parts"]]
        count = max(1, math.ceil(size / part_size))
        name = Path(key).name

        def checkpoint(**changes: Any) -> None:
            state.update(changes, parts=[p.model_dump() for p in parts])
            transfer.checkpoint(dict(state))

        async with self._bot() as bot:
            for index in range(len(parts), count):
                offset = index * part_size
                length = min(part_size, size - offset)
                _, _, sha256 = await asyncio.to_thread(hash_range, artifact, offset, length)
                with PartReader(artifact, offset, length) as body:
                    sent = await self._send(
                        bot,
                        transfer,
                        str(index + 1),
                        f"{name} part {index + 1}/{count}",
                        f"{name}.part{index + 1:03d}",
                        body,
                    )
                parts.append(
                    ManifestPart(index=index, size_bytes=length, sha256=sha256.hex(), **sent)
                )
                checkpoint()
                transfer.on_progress(sum(p.size_bytes for p in parts))
            raw = manifest.model_copy(update={"parts": parts}).to_bytes()
            # A message already sent for exactly these manifest bytes is reused, not posted again.
            raw_sha256 = hashlib.sha256(raw).hexdigest()
            signature = _same(state.get("signature"), raw_sha256)
            if self._sign and signature is None:
                signature = await self._send(
                    bot,
                    transfer,
                    "signature",
                    f"signature of the manifest of {name}",
                    layout.signature_name(name),
                    self._sign(raw),
                )
                signature["manifest_sha256"] = raw_sha256
                checkpoint(signature=signature)
            sent_manifest = _same(state.get("manifest"), raw_sha256)
            if sent_manifest is None:
                sent_manifest = await self._send(
                    bot,
                    transfer,
                    "manifest",
                    f"export-backup manifest of {manifest.project_id}: {count} part(s), "
                    f"sha256 {manifest.sha256}",
                    layout.manifest_name(name),
                    raw,
                )
                sent_manifest["manifest_sha256"] = raw_sha256
                checkpoint(manifest=sent_manifest)
        signature_id = f"&sig_file_id={signature['file_id']}" if self._sign and signature else ""
        location = (
            f"telegram://{self.chat_id}/{sent_manifest['message_id']}"
            f"?file_id={sent_manifest['file_id']}{signature_id}"
        )
        return Stored(location, location)

    def _resumable(self, key: str, sha256: str, transfer: Transfer) -> dict[str, Any]:
        """What an earlier attempt checkpointed for this artifact, or a fresh start. Its part
        size wins over TELEGRAM_PART_BYTES: the parts already posted were cut at that size, and
        re-cutting would post the artifact again (a changed setting applies to the next
        backup), unless this server can not serve parts that big back."""
        fresh = {"key": key, "sha256": sha256, "part_size": self.part_size, "parts": []}
        state = transfer.resume
        if (
            not state
            or state.get("key") != key
            or state.get("sha256", sha256) != sha256  # a re-dumped artifact starts over
            or not isinstance(state.get("part_size"), int)
            or not 0 < state["part_size"] <= self.max_part_size
        ):
            return fresh
        return {**fresh, **state, "sha256": sha256}

    async def fetch(self, location: str, destination: Path, transfer: Transfer) -> Fetched:
        manifest_file_id, signature_file_id = _file_ids(location)
        async with self._bot() as bot:
            buffer = io.BytesIO()
            try:
                await self._download(bot, manifest_file_id, buffer, transfer)
            except UnknownFile:
                raise UnknownFile(
                    f"no backup at {location}: Telegram does not know its manifest's file id "
                    f"(TELEGRAM_API_URL={self.api_url}); check the location and that "
                    "TELEGRAM_BOT_TOKEN is the bot that stored it"
                ) from None
            raw = buffer.getvalue()
            signature = None
            if signature_file_id:
                buffer = io.BytesIO()
                await self._download(bot, signature_file_id, buffer, transfer)
                signature = buffer.getvalue()
            manifest = Manifest.model_validate_json(raw)
            if not manifest.parts:
                raise IntegrityError(f"the manifest at {location} lists no parts")
            done = 0
            with destination.open("wb") as out:
                for part in sorted(manifest.parts, key=lambda p: p.index):
                    length, sha256 = await self._download(bot, part.file_id, out, transfer)
                    if length != part.size_bytes or sha256 != part.sha256:
                        raise IntegrityError(f"part {part.index + 1} of {location} is corrupted")
                    done += length
                    transfer.on_progress(done)
        return Fetched(manifest, raw, signature)

    async def _download(
        self, bot: BotApi, file_id: str, out: IO[bytes], transfer: Transfer
    ) -> tuple[int, str]:
        """Stream one file into `out`; returns its length and SHA-256."""
        info = await self._call(bot, "getFile", transfer, file_id=file_id)
        failure = None
        try:
            return await bot.download(info["file_path"], out)
        except BotApiError as err:
            failure = StorageError(str(err))  # e.g. an expired link: a retry asks for a new one
        raise failure

    async def abort_incomplete(self, key: str) -> int:
        """Nothing stays half-uploaded in Telegram: each part is a whole message. Parts of a run
        that never completed stay in the chat (they are listed in its checkpoint)."""
        return 0

    async def abort_abandoned_uploads(
        self, older_than: timedelta, now: datetime | None = None
    ) -> int:
        """Nothing is half-uploaded in Telegram (see abort_incomplete)."""
        return 0

    async def list_backups(self, project_id: str) -> list[StoredBackup]:
        """The Bot API has no method that lists a chat's messages (getUpdates only brings new
        ones, and only to a bot without a webhook), so there is nothing to apply retention to."""
        raise ListingNotSupported(NO_RETENTION.format(chat=self.chat_id))

    async def delete_backup(self, backup: StoredBackup) -> None:
        """Delete the messages whose ids are `backup.keys` (the parts' ids are in the manifest).
        Telegram lets a bot delete only messages younger than 48 hours: an older one is a
        non-retryable error, because waiting never makes it deletable."""
        async with self._bot() as bot:
            for message_id in backup.keys:
                try:
                    await self._call(
                        bot,
                        "deleteMessage",
                        Transfer(),
                        chat_id=self.chat_id,
                        message_id=message_id,
                    )
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


def _same(sent: Any, manifest_sha256: str) -> dict[str, Any] | None:
    """A checkpointed message, if it was sent for these manifest bytes."""
    if isinstance(sent, dict) and sent.get("manifest_sha256") == manifest_sha256:
        return sent
    return None


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
