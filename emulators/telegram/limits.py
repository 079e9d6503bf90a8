"""The real service's limits, the records the stand-in keeps of what it was sent, and the shape
of its answers (errors, 429 with retry_after, the front proxy's HTML pages for 502-504)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

UPLOAD_LIMIT = 50 * 1000**2
DOWNLOAD_LIMIT = 20 * 1000**2
REAL_SERVER_DOWNLOAD_LIMIT = 20 << 20
DELETE_WINDOW_SECONDS = 48 * 3600
FILE_LINK_TTL_SECONDS = 3600
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

DOWNLOAD = "download"
"""Pseudo method name for `GET /file/bot<token>/<file_path>` in `requests`, `fail_next`, etc."""

METHODS = {
    name.lower(): name
    for name in ("getMe", "sendMessage", "sendDocument", "getFile", "deleteMessage")
}
TOKEN_FORMAT = re.compile(r"[1-9][0-9]{0,15}:[A-Za-z0-9_-]+")
READ_CHUNK = 1 << 20
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
class Chat:
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
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_name: str | None
    mime_type: str


@dataclass(frozen=True)
class Upload:
    file_name: str | None
    content_type: str
    data: bytes


@dataclass
class Injection:
    status: int
    retry_after: int


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def response(self) -> Response:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        headers: tuple[tuple[str, str], ...] = ()
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
            headers = (("Retry-After", str(self.retry_after)),)
        return Response(self.status, json_bytes(body), headers=headers)


def failure(status: int) -> Response:
    """A 5xx (or other) answer: 502-504 as the front proxy's HTML page, else the JSON error."""
    phrase = HTTPStatus(status).phrase
    if status >= 502:
        page = _NGINX_PAGE.format(code=status, phrase=phrase)
        return Response(status, page.encode(), "text/html")
    return ApiError(status, phrase).response()


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
