"""A local stand-in for the Telegram Bot API cloud, for the tests of Telegram storage and notices.

No real Telegram can run here, so this one has to refuse what Telegram refuses: a stand-in that is
more lenient than the service would let a backend pass its tests and then fail in production.

Limits, and why these numbers (all configurable; tests use small ones to exercise splitting):

- Upload (`UPLOAD_LIMIT` = 50,000,000 bytes). The docs say "up to 50 MB"; reports of refused
  uploads show `truncate -s 50M` (50 MiB) files refused, with 413 "Request Entity Too Large". The
  unit is not documented, so the stricter reading is used: decimal megabytes, counted over the
  whole request body as a front proxy does, so the multipart envelope counts too. Anything this
  accepts, the real service accepts under either reading.
- Download (`DOWNLOAD_LIMIT` = 20,000,000 bytes). The docs say "up to 20MB"; the open-source Bot
  API server has `MAX_DOWNLOAD_FILE_SIZE = 20 << 20` (20,971,520, `REAL_SERVER_DOWNLOAD_LIMIT`)
  and refuses `getFile` above it with 400 "Bad Request: file is too big". The stricter decimal
  value is used here, so a part size chosen against this stand-in is also safe against any
  deployment reading "20MB" as decimal.
- `deleteMessage` only within 48 hours of sending (400 "Bad Request: message can't be deleted");
  the stand-in's clock can be moved with `advance_clock`.
- A download link (`file_path`) is guaranteed for one hour; here it expires after exactly one.
- Text: 1-4096 characters after entity parsing (counted in UTF-16 units, the stricter count);
  captions up to 1024. HTML parse mode refuses unsupported tags, unbalanced tags and bare `<`,
  `>`, `&`; MarkdownV2 refuses the reserved characters that never start an entity
  (`# + - = { } . !`) unless escaped. Legacy Markdown is not checked.

Behaviour kept from the real service: methods are case-insensitive and accept GET or POST with
query-string, JSON, urlencoded or multipart arguments; errors are
`{"ok": false, "error_code": N, "description": "..."}`; 429 carries `parameters.retry_after` and a
`Retry-After` header; a well-formed but unknown token answers 401 "Unauthorized", a malformed one
401 "Unauthorized: invalid token specified"; an unknown method 404 "Not Found: method not found".

Faults on demand: `rate_limit_next` (429), `fail_next` (the call fails before it takes effect) and
`lose_answer_next` (the call takes effect, then the answer is lost: what a client sees when a
timeout or a proxy's 5xx comes after Telegram stored the message).

Not emulated: methods other than getMe, sendMessage, sendDocument, getFile and deleteMessage
(they answer 404 like unknown ones), automatic flood control (use `rate_limit_next`), and
per-chat message ids (ids here are unique across chats; a message is still only found in its own
chat).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

UPLOAD_LIMIT = 50 * 1000**2
DOWNLOAD_LIMIT = 20 * 1000**2
REAL_SERVER_DOWNLOAD_LIMIT = 20 << 20
DELETE_WINDOW_SECONDS = 48 * 3600
FILE_LINK_TTL_SECONDS = 3600
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

DOWNLOAD = "download"
"""Pseudo method name for `GET /file/bot<token>/<file_path>` in `requests`, `fail_next`, etc."""

_METHODS = {
    name.lower(): name
    for name in ("getMe", "sendMessage", "sendDocument", "getFile", "deleteMessage")
}
_TOKEN_FORMAT = re.compile(r"[1-9][0-9]{0,15}:[A-Za-z0-9_-]+")
_READ_CHUNK = 1 << 20
_HTML_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
        "code", "pre", "blockquote", "tg-emoji",
    }
)  # fmt: skip
_HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
_MARKDOWN_V2_ALWAYS_ESCAPED = frozenset("#+-={}.")
_PARSE_MODES = {"html": "HTML", "markdown": "Markdown", "markdownv2": "MarkdownV2"}
_NGINX_PAGE = "<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n<center><h1>{code} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"  # noqa: E501


@dataclass(frozen=True)
class StoredDocument:
    """A document as the stand-in received it, for tests to compare with what was sent."""

    message_id: int
    chat_id: int
    message_thread_id: int | None
    data: bytes
    file_name: str | None
    mime_type: str
    caption: str | None
    file_id: str
    file_unique_id: str
    date: int


@dataclass(frozen=True)
class SentMessage:
    """A text message as sent: `text` is what the client sent, `plain_text` after parse_mode."""

    message_id: int
    chat_id: int
    message_thread_id: int | None
    text: str
    plain_text: str
    parse_mode: str | None
    date: int


@dataclass(frozen=True)
class _Chat:
    id: int
    type: str
    username: str | None
    is_forum: bool

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            data["first_name"] = "Backup Operator"
        else:
            data["title"] = f"Backup chat {self.id}"
        if self.username:
            data["username"] = self.username
        if self.is_forum:
            data["is_forum"] = True
        return data


@dataclass(frozen=True)
class _StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_name: str | None
    mime_type: str


@dataclass(frozen=True)
class _Upload:
    file_name: str | None
    content_type: str
    data: bytes


@dataclass
class _Injection:
    status: int
    retry_after: int


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class _ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def response(self) -> _Response:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        headers: tuple[tuple[str, str], ...] = ()
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
            headers = (("Retry-After", str(self.retry_after)),)
        return _Response(self.status, _json_bytes(body), headers=headers)


def _failure(status: int) -> _Response:
    """A 5xx (or other) answer: 502-504 as the front proxy's HTML page, else the JSON error."""
    phrase = HTTPStatus(status).phrase
    if status >= 502:
        page = _NGINX_PAGE.format(code=status, phrase=phrase)
        return _Response(status, page.encode(), "text/html")
    return _ApiError(status, phrase).response()


def _bad_request(detail: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {detail}")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeTelegramAPI:
    """The Bot API cloud for one bot, served over HTTP on 127.0.0.1 from a daemon thread.

    Use it as a context manager (sync or async) or call `start()` / `stop()`. API calls go to
    `{base_url}/bot{token}/{method}`, downloads to `{base_url}/file/bot{token}/{file_path}`.
    """

    def __init__(
        self,
        token: str,
        chat_ids: Iterable[int | str],
        *,
        upload_limit: int = UPLOAD_LIMIT,
        download_limit: int = DOWNLOAD_LIMIT,
        forum_topics: Mapping[int | str, Iterable[int]] | None = None,
        bot_username: str = "export_backup_test_bot",
    ) -> None:
        if not _TOKEN_FORMAT.fullmatch(token):
            raise ValueError(f"token {token!r} is not of the form '<bot id>:<secret>'")
        self.token = token
        self.upload_limit = upload_limit
        self.download_limit = download_limit
        self.bot_username = bot_username
        self.clock_offset = 0.0
        """Seconds added to the wall clock, for the 48 h delete window and link expiry."""

        self.requests: list[tuple[str, bool]] = []
        self.documents: dict[int, StoredDocument] = {}
        self.messages: dict[int, str] = {}
        self.sent_messages: dict[int, SentMessage] = {}
        self.deleted: set[int] = set()

        topics = {self._chat_key(chat): set(ids) for chat, ids in (forum_topics or {}).items()}
        self._chats: dict[str, _Chat] = {}
        self._topics: dict[int, set[int]] = {}
        for index, chat_id in enumerate(chat_ids):
            key = self._chat_key(chat_id)
            chat = self._make_chat(key, index, key in topics)
            self._chats[key] = chat
            self._chats[str(chat.id)] = chat
            if key in topics:
                self._topics[chat.id] = topics[key]
        if unknown := set(topics) - set(self._chats):
            raise ValueError(f"forum_topics names chats that are not in chat_ids: {unknown}")

        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._files: dict[str, _StoredFile] = {}
        self._file_paths: dict[str, str] = {}  # file_id -> file_path
        self._links: dict[str, tuple[str, float]] = {}  # file_path -> (file_id, issued at)
        self._message_index: dict[int, tuple[int, int]] = {}  # message_id -> (chat id, date)
        self._injections: dict[str, deque[_Injection]] = defaultdict(deque)
        self._lost_answers: dict[str, deque[int]] = defaultdict(deque)  # method -> statuses
        self._call_times: dict[str, list[float]] = defaultdict(list)
        self._rate_limited_at: dict[str, list[float]] = defaultdict(list)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-telegram-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeTelegramAPI is not started: call start() or use it in `with`")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """`{base_url}/bot{token}`: append `/{method}`."""
        return f"{self.base_url}/bot{self.token}"

    # Test controls and inspection

    def rate_limit_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls of `method` answer 429 "Too Many Requests: retry after N"."""
        if retry_after < 1:
            raise ValueError("Telegram's retry_after is a whole number of seconds, at least 1")
        self._inject(method, _Injection(429, retry_after), times)

    def fail_next(self, method: str, status: int = 500, times: int = 1) -> None:
        """The next `times` calls of `method` fail with `status`: 500 as the Bot API server's
        JSON error, 502-504 as the front proxy's HTML page (not JSON, as in production)."""
        self._inject(method, _Injection(status, 0), times)

    def lose_answer_next(self, method: str, status: int = 504, times: int = 1) -> None:
        """The next `times` successful calls of `method` take effect (a document is stored, a
        message sent) but the client gets `status` instead of the result, as `fail_next` words
        it. The Bot API has no idempotency key, so a client that retries posts again."""
        if status < 500:
            raise ValueError("a lost answer looks like a 5xx (or a timeout) to the client")
        with self._lock:
            self._lost_answers[self._canonical(method)].extend([status] * times)

    def call_times(self, method: str) -> list[float]:
        """`time.monotonic()` of every call of `method` that reached the stand-in, in order."""
        with self._lock:
            return list(self._call_times[self._canonical(method)])

    def rate_limited_at(self, method: str) -> list[float]:
        """`time.monotonic()` of every call of `method` answered with 429."""
        with self._lock:
            return list(self._rate_limited_at[self._canonical(method)])

    def waits_after_rate_limit(self, method: str) -> list[float]:
        """For each 429 of `method`, the seconds until the next call of it came (if one came)."""
        calls = self.call_times(method)
        waits = []
        for limited in self.rate_limited_at(method):
            later = [moment for moment in calls if moment > limited]
            if later:
                waits.append(later[0] - limited)
        return waits

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        self.clock_offset += seconds

    def _inject(self, method: str, injection: _Injection, times: int) -> None:
        canonical = self._canonical(method)
        with self._lock:
            self._injections[canonical].extend(
                _Injection(injection.status, injection.retry_after) for _ in range(times)
            )

    @staticmethod
    def _canonical(method: str) -> str:
        if method.lower() == DOWNLOAD:
            return DOWNLOAD
        try:
            return _METHODS[method.lower()]
        except KeyError:
            emulated = ", ".join([*_METHODS.values(), DOWNLOAD])
            raise ValueError(f"{method!r} is not emulated; use one of {emulated}") from None

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
    def _make_chat(key: str, index: int, is_forum: bool) -> _Chat:
        if key.startswith("@"):
            return _Chat(-1_001_000_000_000 - index, "channel", key[1:], is_forum)
        chat_id = int(key)
        if chat_id > 0:
            kind = "private"
        elif chat_id <= -1_000_000_000_000:
            kind = "supergroup"
        else:
            kind = "group"
        return _Chat(chat_id, kind, None, is_forum)

    def _chat(self, args: Mapping[str, str]) -> _Chat:
        raw = args.get("chat_id", "").strip()
        if not raw:
            raise _bad_request("chat_id is empty")
        try:
            key = self._chat_key(raw)
        except ValueError:
            raise _bad_request("chat not found") from None
        chat = self._chats.get(key)
        if chat is None:
            raise _bad_request("chat not found")
        return chat

    def _thread_id(self, chat: _Chat, args: Mapping[str, str]) -> int | None:
        raw = args.get("message_thread_id", "").strip()
        if not raw:
            return None
        try:
            thread_id = int(raw)
        except ValueError:
            raise _bad_request("invalid message_thread_id specified") from None
        topics = self._topics.get(chat.id)
        if topics is not None and thread_id not in topics:
            raise _bad_request("message thread not found")
        return thread_id

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": int(self.token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "Export Backup Test Bot",
            "username": self.bot_username,
        }

    def _message_json(self, message_id: int, chat: _Chat, thread: int | None, date: int) -> Any:
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

    # HTTP

    def _record(self, method: str, ok: bool) -> None:
        with self._lock:
            self.requests.append((method, ok))

    def _take_injection(self, method: str) -> _Response | None:
        with self._lock:
            self._call_times[method].append(time.monotonic())
            queue = self._injections.get(method)
            if not queue:
                return None
            injection = queue.popleft()
            if injection.status == 429:
                self._rate_limited_at[method].append(time.monotonic())
        if injection.status == 429:
            retry = injection.retry_after
            return _ApiError(429, f"Too Many Requests: retry after {retry}", retry).response()
        return _failure(injection.status)

    def _take_lost_answer(self, method: str) -> _Response | None:
        with self._lock:
            queue = self._lost_answers.get(method)
            status = queue.popleft() if queue else None
        return None if status is None else _failure(status)

    def _dispatch(self, target: str, headers: Message, body: bytes, size: int) -> _Response:
        split = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(split.path)
        if path.startswith("/file/bot"):
            return self._download(path.removeprefix("/file/bot"))
        if not path.startswith("/bot"):
            self._record(path, False)
            return _ApiError(404, "Not Found").response()
        token, _, name = path.removeprefix("/bot").partition("/")
        method = _METHODS.get(name.lower(), name)
        if size > self.upload_limit:
            # The front proxy refuses the body before the Bot API server sees the request.
            self._record(method, False)
            return _ApiError(413, "Request Entity Too Large").response()
        try:
            self._check_token(token)
            if name.lower() not in _METHODS:
                raise _ApiError(404, "Not Found: method not found")
            if (injected := self._take_injection(method)) is not None:
                self._record(method, False)
                return injected
            args, files = _parse_arguments(split.query, headers, body)
            handler = getattr(self, f"_api_{method}")
            with self._lock:
                result = handler(args, files)
        except _ApiError as error:
            self._record(method, False)
            return error.response()
        if (lost := self._take_lost_answer(method)) is not None:
            self._record(method, False)  # took effect, but the client sees a failure
            return lost
        self._record(method, True)
        return _Response(200, _json_bytes({"ok": True, "result": result}))

    def _check_token(self, token: str) -> None:
        if token == self.token:
            return
        if not _TOKEN_FORMAT.fullmatch(token):
            raise _ApiError(401, "Unauthorized: invalid token specified")
        raise _ApiError(401, "Unauthorized")

    def _download(self, rest: str) -> _Response:
        token, _, file_path = rest.partition("/")
        try:
            self._check_token(token)
            if (injected := self._take_injection(DOWNLOAD)) is not None:
                self._record(DOWNLOAD, False)
                return injected
            with self._lock:
                link = self._links.get(file_path)
                if link is None or self.now() - link[1] >= FILE_LINK_TTL_SECONDS:
                    raise _ApiError(404, "Not Found")
                data = self._files[link[0]].data
        except _ApiError as error:
            self._record(DOWNLOAD, False)
            return error.response()
        self._record(DOWNLOAD, True)
        return _Response(200, data, "application/octet-stream")

    # Methods (called with the lock held)

    def _api_getMe(self, args: Mapping[str, str], files: Mapping[str, _Upload]) -> Any:
        return {**self._bot_user(), "can_join_groups": True, "can_read_all_group_messages": False}

    def _api_sendMessage(self, args: Mapping[str, str], files: Mapping[str, _Upload]) -> Any:
        chat = self._chat(args)
        thread = self._thread_id(chat, args)
        text = args.get("text", "")
        parse_mode = _parse_mode(args)
        plain = _parse_entities(text, parse_mode)
        if not plain.strip():
            raise _bad_request("message text is empty")
        if _utf16_length(plain) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        message_id, date = self._new_message(chat)
        self.messages[message_id] = text
        self.sent_messages[message_id] = SentMessage(
            message_id, chat.id, thread, text, plain, parse_mode, date
        )
        return {**self._message_json(message_id, chat, thread, date), "text": plain}

    def _api_sendDocument(self, args: Mapping[str, str], files: Mapping[str, _Upload]) -> Any:
        chat = self._chat(args)
        thread = self._thread_id(chat, args)
        stored = self._document_file(args, files)
        caption = args.get("caption") or None
        plain_caption = None
        if caption is not None:
            plain_caption = _parse_entities(caption, _parse_mode(args))
            if _utf16_length(plain_caption) > MAX_CAPTION_LENGTH:
                raise _bad_request("message caption is too long")
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

    def _document_file(self, args: Mapping[str, str], files: Mapping[str, _Upload]) -> _StoredFile:
        upload = files.get("document")
        reference = args.get("document", "").strip()
        if upload is None and reference.startswith("attach://"):
            upload = files.get(reference.removeprefix("attach://"))
        if upload is None:
            if not reference:
                raise _bad_request("there is no document in the request")
            existing = self._files.get(reference)
            if existing is None:
                raise _bad_request("wrong file identifier/HTTP URL specified")
            return existing
        if not upload.data:
            raise _bad_request("file must be non-empty")
        stored = _StoredFile(
            file_id="BQACAgIAAxkBAAI" + secrets.token_urlsafe(24),
            file_unique_id="AgAD" + secrets.token_urlsafe(9),
            data=upload.data,
            file_name=upload.file_name,
            mime_type=upload.content_type,
        )
        self._files[stored.file_id] = stored
        return stored

    def _api_getFile(self, args: Mapping[str, str], files: Mapping[str, _Upload]) -> Any:
        file_id = args.get("file_id", "").strip()
        stored = self._files.get(file_id)
        if stored is None:
            raise _bad_request("invalid file_id")
        if len(stored.data) > self.download_limit:
            raise _bad_request("file is too big")
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

    def _api_deleteMessage(self, args: Mapping[str, str], files: Mapping[str, _Upload]) -> Any:
        chat = self._chat(args)
        raw = args.get("message_id", "").strip()
        try:
            message_id = int(raw)
        except ValueError:
            raise _bad_request("message identifier is not specified") from None
        found = self._message_index.get(message_id)
        if found is None or found[0] != chat.id or message_id in self.deleted:
            raise _bad_request("message to delete not found")
        if self.now() - found[1] >= DELETE_WINDOW_SECONDS:
            raise _bad_request("message can't be deleted")
        self.deleted.add(message_id)
        return True

    def _new_message(self, chat: _Chat) -> tuple[int, int]:
        message_id = next(self._ids)
        date = int(self.now())
        self._message_index[message_id] = (chat.id, date)
        return message_id, date


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest output is for the tests."""

    def _handle(self) -> None:
        fake: FakeTelegramAPI = self.server.fake  # type: ignore[attr-defined]
        body, size = self._read_body(fake.upload_limit)
        response = fake._dispatch(self.path, self.headers, body, size)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _read_body(self, limit: int) -> tuple[bytes, int]:
        """Read the whole body (so the connection stays usable) but keep it only within limit."""
        kept: list[bytes] = []
        size = 0

        def take(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size <= limit:
                kept.append(data)
            else:
                kept.clear()

        def read_exactly(count: int) -> None:
            while count > 0:
                data = self.rfile.read(min(count, _READ_CHUNK))
                if not data:
                    return
                take(data)
                count -= len(data)

        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                chunk_size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if chunk_size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                read_exactly(chunk_size)
                self.rfile.readline()
        else:
            read_exactly(int(self.headers.get("Content-Length") or 0))
        return b"".join(kept), size


def _parse_arguments(
    query: str, headers: Message, body: bytes
) -> tuple[dict[str, str], dict[str, _Upload]]:
    args = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    files: dict[str, _Upload] = {}
    content_type = headers.get_content_type()
    if not body:
        return args, files
    if content_type == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise _bad_request("can't parse JSON object") from None
        if not isinstance(decoded, dict):
            raise _bad_request("JSON object expected")
        for key, value in decoded.items():
            if isinstance(value, bool):
                args[key] = "true" if value else "false"
            elif isinstance(value, str):
                args[key] = value
            elif value is not None:
                args[key] = json.dumps(value)
    elif content_type == "application/x-www-form-urlencoded":
        args |= urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    elif content_type == "multipart/form-data":
        boundary = headers.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            raise _bad_request("multipart/form-data without a boundary")
        _parse_multipart(body, boundary, args, files)
    return args, files


def _parse_multipart(
    body: bytes, boundary: str, args: dict[str, str], files: dict[str, _Upload]
) -> None:
    for section in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if section.startswith(b"--"):
            break
        head, separator, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise _bad_request("malformed multipart/form-data")
        content = content.removesuffix(b"\r\n")
        part = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            part[name.strip()] = value.strip()
        field_name = part.get_param("name", header="content-disposition")
        if not isinstance(field_name, str):
            continue
        file_name = part.get_filename()
        if file_name is None and part.get("content-type") is None:
            args[field_name] = content.decode("utf-8")
        else:
            has_type = part.get("content-type") is not None
            content_type = part.get_content_type() if has_type else "application/octet-stream"
            files[field_name] = _Upload(file_name, content_type, content)


def _parse_mode(args: Mapping[str, str]) -> str | None:
    raw = args.get("parse_mode", "").strip()
    if not raw:
        return None
    mode = _PARSE_MODES.get(raw.lower())
    if mode is None:
        raise _bad_request(f"unsupported parse_mode {raw!r}")
    return mode


def _parse_entities(text: str, parse_mode: str | None) -> str:
    if parse_mode == "HTML":
        return _parse_html(text)
    if parse_mode == "MarkdownV2":
        return _parse_markdown_v2(text)
    return text


def _entity_error(detail: str, text: str, index: int) -> _ApiError:
    offset = len(text[:index].encode("utf-8"))
    return _bad_request(f"can't parse entities: {detail} at byte offset {offset}")


def _parse_html(text: str) -> str:
    """Telegram's HTML subset: the plain text, or the 400 Telegram would answer."""
    plain: list[str] = []
    open_tags: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "<":
            end = text.find(">", index)
            if end < 0:
                raise _entity_error("Unclosed start tag", text, index)
            inner = text[index + 1 : end]
            if inner.startswith("/"):
                name = inner[1:].strip().lower()
                if not open_tags:
                    raise _entity_error(f'Unexpected end tag "{name}"', text, index)
                if name != open_tags[-1]:
                    raise _entity_error(
                        f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"',
                        text,
                        index,
                    )
                open_tags.pop()
            else:
                name, _, attributes = inner.partition(" ")
                name = name.strip().lower()
                if name not in _HTML_TAGS:
                    raise _entity_error(f'Unsupported start tag "{name}"', text, index)
                if name == "span" and "tg-spoiler" not in attributes:
                    raise _entity_error('Tag "span" must have class "tg-spoiler"', text, index)
                open_tags.append(name)
            index = end + 1
        elif char == "&":
            match = _HTML_ENTITY.match(text, index)
            if match is None:
                raise _entity_error("Character '&' must be escaped as &amp;", text, index)
            entity = match.group()
            plain.append({"&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"'}.get(entity, "?"))
            index = match.end()
        elif char == ">":
            raise _entity_error("Character '>' must be escaped as &gt;", text, index)
        else:
            plain.append(char)
            index += 1
    if open_tags:
        raise _entity_error(
            f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"', text, len(text)
        )
    return "".join(plain)


def _parse_markdown_v2(text: str) -> str:
    """Only the reserved characters that can never start an entity are checked."""
    plain: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            plain.append(text[index + 1])
            index += 2
            continue
        if char in _MARKDOWN_V2_ALWAYS_ESCAPED or (
            char == "!" and text[index + 1 : index + 2] != "["
        ):
            raise _bad_request(
                f"can't parse entities: Character '{char}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        if char not in "*_~|`[]()>":
            plain.append(char)
        index += 1
    return "".join(plain)
