"""HTTP for the stand-in: a request handler that reads bodies within the upload limit, and the
Bot API's argument forms (query string, JSON, urlencoded, multipart)."""

from __future__ import annotations

import json
import urllib.parse
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from emulators.telegram.limits import READ_CHUNK, Upload, bad_request

if TYPE_CHECKING:
    from emulators.telegram.server import FakeTelegramAPI


class Handler(BaseHTTPRequestHandler):
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
                data = self.rfile.read(min(count, READ_CHUNK))
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


def parse_arguments(
    query: str, headers: Message, body: bytes
) -> tuple[dict[str, str], dict[str, Upload]]:
    args = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    files: dict[str, Upload] = {}
    content_type = headers.get_content_type()
    if not body:
        return args, files
    if content_type == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise bad_request("can't parse JSON object") from None
        if not isinstance(decoded, dict):
            raise bad_request("JSON object expected")
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
            raise bad_request("multipart/form-data without a boundary")
        _parse_multipart(body, boundary, args, files)
    return args, files


def _parse_multipart(
    body: bytes, boundary: str, args: dict[str, str], files: dict[str, Upload]
) -> None:
    for section in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if section.startswith(b"--"):
            break
        head, separator, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise bad_request("malformed multipart/form-data")
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
            files[field_name] = Upload(file_name, content_type, content)
