"""FakeTelegramAPI: the Bot API cloud for one bot, over HTTP on 127.0.0.1 from a daemon thread,
with the faults tests ask for (429, 5xx, lost answers) and the stand-in's clock."""

from __future__ import annotations

import itertools
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from email.message import Message
from http.server import ThreadingHTTPServer
from typing import Self

from emulators.telegram.http import Handler, parse_arguments
from emulators.telegram.limits import (
    DOWNLOAD,
    DOWNLOAD_LIMIT,
    FILE_LINK_TTL_SECONDS,
    METHODS,
    TOKEN_FORMAT,
    UPLOAD_LIMIT,
    ApiError,
    Chat,
    Injection,
    Response,
    SentMessage,
    StoredDocument,
    StoredFile,
    failure,
    json_bytes,
)
from emulators.telegram.methods import BotMethods


class FakeTelegramAPI(BotMethods):
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
        if not TOKEN_FORMAT.fullmatch(token):
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
        self._chats: dict[str, Chat] = {}
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
        self._files: dict[str, StoredFile] = {}
        self._file_paths: dict[str, str] = {}  # file_id -> file_path
        self._links: dict[str, tuple[str, float]] = {}  # file_path -> (file_id, issued at)
        self._message_index: dict[int, tuple[int, int]] = {}  # message_id -> (chat id, date)
        self._injections: dict[str, deque[Injection]] = defaultdict(deque)
        self._lost_answers: dict[str, deque[int]] = defaultdict(deque)  # method -> statuses
        self._call_times: dict[str, list[float]] = defaultdict(list)
        self._rate_limited_at: dict[str, list[float]] = defaultdict(list)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:  # the same, for `async with` in async tests
        return self.start()

    async def __aexit__(self, *_: object) -> None:
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
        self._inject(method, Injection(429, retry_after), times)

    def fail_next(self, method: str, status: int = 500, times: int = 1) -> None:
        """The next `times` calls of `method` fail with `status`: 500 as the Bot API server's
        JSON error, 502-504 as the front proxy's HTML page (not JSON, as in production)."""
        self._inject(method, Injection(status, 0), times)

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

    def _inject(self, method: str, injection: Injection, times: int) -> None:
        canonical = self._canonical(method)
        with self._lock:
            self._injections[canonical].extend(
                Injection(injection.status, injection.retry_after) for _ in range(times)
            )

    @staticmethod
    def _canonical(method: str) -> str:
        if method.lower() == DOWNLOAD:
            return DOWNLOAD
        try:
            return METHODS[method.lower()]
        except KeyError:
            emulated = ", ".join([*METHODS.values(), DOWNLOAD])
            raise ValueError(f"{method!r} is not emulated; use one of {emulated}") from None

    # HTTP

    def _record(self, method: str, ok: bool) -> None:
        with self._lock:
            self.requests.append((method, ok))

    def _take_injection(self, method: str) -> Response | None:
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
            return ApiError(429, f"Too Many Requests: retry after {retry}", retry).response()
        return failure(injection.status)

    def _take_lost_answer(self, method: str) -> Response | None:
        with self._lock:
            queue = self._lost_answers.get(method)
            status = queue.popleft() if queue else None
        return None if status is None else failure(status)

    def _dispatch(self, target: str, headers: Message, body: bytes, size: int) -> Response:
        split = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(split.path)
        if path.startswith("/file/bot"):
            return self._download(path.removeprefix("/file/bot"))
        if not path.startswith("/bot"):
            self._record(path, False)
            return ApiError(404, "Not Found").response()
        token, _, name = path.removeprefix("/bot").partition("/")
        method = METHODS.get(name.lower(), name)
        if size > self.upload_limit:
            # The front proxy refuses the body before the Bot API server sees the request.
            self._record(method, False)
            return ApiError(413, "Request Entity Too Large").response()
        try:
            self._check_token(token)
            if name.lower() not in METHODS:
                raise ApiError(404, "Not Found: method not found")
            if (injected := self._take_injection(method)) is not None:
                self._record(method, False)
                return injected
            args, files = parse_arguments(split.query, headers, body)
            handler = getattr(self, f"_api_{method}")
            with self._lock:
                result = handler(args, files)
        except ApiError as error:
            self._record(method, False)
            return error.response()
        if (lost := self._take_lost_answer(method)) is not None:
            self._record(method, False)  # took effect, but the client sees a failure
            return lost
        self._record(method, True)
        return Response(200, json_bytes({"ok": True, "result": result}))

    def _check_token(self, token: str) -> None:
        if token == self.token:
            return
        if not TOKEN_FORMAT.fullmatch(token):
            raise ApiError(401, "Unauthorized: invalid token specified")
        raise ApiError(401, "Unauthorized")

    def _download(self, rest: str) -> Response:
        token, _, file_path = rest.partition("/")
        try:
            self._check_token(token)
            if (injected := self._take_injection(DOWNLOAD)) is not None:
                self._record(DOWNLOAD, False)
                return injected
            with self._lock:
                link = self._links.get(file_path)
                if link is None or self.now() - link[1] >= FILE_LINK_TTL_SECONDS:
                    raise ApiError(404, "Not Found")
                data = self._files[link[0]].data
        except ApiError as error:
            self._record(DOWNLOAD, False)
            return error.response()
        self._record(DOWNLOAD, True)
        return Response(200, data, "application/octet-stream")
