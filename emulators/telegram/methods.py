"""The emulated Bot API methods and chats: what each method checks and answers (called by the
server with its lock held)."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Mapping
from typing import Any

from emulators.telegram.limits import (
    DELETE_WINDOW_SECONDS,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    Chat,
    SentMessage,
    StoredDocument,
    StoredFile,
    Upload,
    bad_request,
)
from emulators.telegram.text import parse_entities, read_parse_mode, utf16_length


class BotMethods:
    """getMe, sendMessage, sendDocument, getFile, deleteMessage over the stand-in's state."""

    token: str
    bot_username: str
    download_limit: int
    clock_offset: float
    documents: dict[int, StoredDocument]
    messages: dict[int, str]
    sent_messages: dict[int, SentMessage]
    deleted: set[int]
    _chats: dict[str, Chat]
    _topics: dict[int, set[int]]
    _ids: itertools.count[int]
    _files: dict[str, StoredFile]
    _file_paths: dict[str, str]
    _links: dict[str, tuple[str, float]]
    _message_index: dict[int, tuple[int, int]]

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        self.clock_offset += seconds

    # Chats

    @staticmethod
    def _chat_key(chat_id: int | str) -> str:
        text = str(chat_id).strip()
        if text.startswith("@"):
            return text.lower()
        try:
            return str(int(text))
        except ValueError:
            raise ValueError(f"chat id {chat_id!r} is neither a number nor @username") from None

    @staticmethod
    def _make_chat(key: str, index: int, is_forum: bool) -> Chat:
        if key.startswith("@"):
            return Chat(-1_001_000_000_000 - index, "channel", key[1:], is_forum)
        chat_id = int(key)
        if chat_id > 0:
            kind = "private"
        elif chat_id <= -1_000_000_000_000:
            kind = "supergroup"
        else:
            kind = "group"
        return Chat(chat_id, kind, None, is_forum)

    def _chat(self, args: Mapping[str, str]) -> Chat:
        raw = args.get("chat_id", "").strip()
        if not raw:
            raise bad_request("chat_id is empty")
        try:
            key = self._chat_key(raw)
        except ValueError:
            raise bad_request("chat not found") from None
        chat = self._chats.get(key)
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _thread_id(self, chat: Chat, args: Mapping[str, str]) -> int | None:
        raw = args.get("message_thread_id", "").strip()
        if not raw:
            return None
        try:
            thread_id = int(raw)
        except ValueError:
            raise bad_request("invalid message_thread_id specified") from None
        topics = self._topics.get(chat.id)
        if topics is not None and thread_id not in topics:
            raise bad_request("message thread not found")
        return thread_id

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": int(self.token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "Export Backup Test Bot",
            "username": self.bot_username,
        }

    def _message_json(self, message_id: int, chat: Chat, thread: int | None, date: int) -> Any:
        message: dict[str, Any] = {"message_id": message_id}
        if chat.type == "channel":
            message["sender_chat"] = chat.as_json()
        else:
            message["from"] = self._bot_user()
        message["chat"] = chat.as_json()
        message["date"] = date
        if thread is not None:
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        return message

    # Methods (called with the lock held)

    def _api_getMe(self, args: Mapping[str, str], files: Mapping[str, Upload]) -> Any:
        return {**self._bot_user(), "can_join_groups": True, "can_read_all_group_messages": False}

    def _api_sendMessage(self, args: Mapping[str, str], files: Mapping[str, Upload]) -> Any:
        chat = self._chat(args)
        thread = self._thread_id(chat, args)
        text = args.get("text", "")
        parse_mode = read_parse_mode(args)
        plain = parse_entities(text, parse_mode)
        if not plain.strip():
            raise bad_request("message text is empty")
        if utf16_length(plain) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")
        message_id, date = self._new_message(chat)
        self.messages[message_id] = text
        self.sent_messages[message_id] = SentMessage(
            message_id, chat.id, thread, text, plain, parse_mode, date
        )
        return {**self._message_json(message_id, chat, thread, date), "text": plain}

    def _api_sendDocument(self, args: Mapping[str, str], files: Mapping[str, Upload]) -> Any:
        chat = self._chat(args)
        thread = self._thread_id(chat, args)
        stored = self._document_file(args, files)
        caption = args.get("caption") or None
        plain_caption = None
        if caption is not None:
            plain_caption = parse_entities(caption, read_parse_mode(args))
            if utf16_length(plain_caption) > MAX_CAPTION_LENGTH:
                raise bad_request("message caption is too long")
        message_id, date = self._new_message(chat)
        self.documents[message_id] = StoredDocument(
            message_id=message_id,
            chat_id=chat.id,
            message_thread_id=thread,
            data=stored.data,
            file_name=stored.file_name,
            mime_type=stored.mime_type,
            caption=caption,
            file_id=stored.file_id,
            file_unique_id=stored.file_unique_id,
            date=date,
        )
        document: dict[str, Any] = {}
        if stored.file_name is not None:
            document["file_name"] = stored.file_name
        document |= {
            "mime_type": stored.mime_type,
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        message = self._message_json(message_id, chat, thread, date)
        message["document"] = document
        if plain_caption:
            message["caption"] = plain_caption
        return message

    def _document_file(self, args: Mapping[str, str], files: Mapping[str, Upload]) -> StoredFile:
        upload = files.get("document")
        reference = args.get("document", "").strip()
        if upload is None and reference.startswith("attach://"):
            upload = files.get(reference.removeprefix("attach://"))
        if upload is None:
            if not reference:
                raise bad_request("there is no document in the request")
            existing = self._files.get(reference)
            if existing is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            return existing
        if not upload.data:
            raise bad_request("file must be non-empty")
        stored = StoredFile(
            file_id="BQACAgIAAxkBAAI" + secrets.token_urlsafe(24),
            file_unique_id="AgAD" + secrets.token_urlsafe(9),
            data=upload.data,
            file_name=upload.file_name,
            mime_type=upload.content_type,
        )
        self._files[stored.file_id] = stored
        return stored

    def _api_getFile(self, args: Mapping[str, str], files: Mapping[str, Upload]) -> Any:
        file_id = args.get("file_id", "").strip()
        stored = self._files.get(file_id)
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > self.download_limit:
            raise bad_request("file is too big")
        file_path = self._file_paths.get(file_id)
        if file_path is None:
            suffix = ""
            if stored.file_name and "." in stored.file_name:
                suffix = "." + stored.file_name.rsplit(".", 1)[1]
            file_path = f"documents/file_{len(self._file_paths)}{suffix}"
            self._file_paths[file_id] = file_path
        self._links[file_path] = (file_id, self.now())
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": file_path,
        }

    def _api_deleteMessage(self, args: Mapping[str, str], files: Mapping[str, Upload]) -> Any:
        chat = self._chat(args)
        raw = args.get("message_id", "").strip()
        try:
            message_id = int(raw)
        except ValueError:
            raise bad_request("message identifier is not specified") from None
        found = self._message_index.get(message_id)
        if found is None or found[0] != chat.id or message_id in self.deleted:
            raise bad_request("message to delete not found")
        if self.now() - found[1] >= DELETE_WINDOW_SECONDS:
            raise bad_request("message can't be deleted")
        self.deleted.add(message_id)
        return True

    def _new_message(self, chat: Chat) -> tuple[int, int]:
        message_id = next(self._ids)
        date = int(self.now())
        self._message_index[message_id] = (chat.id, date)
        return message_id, date
