"""Codec server: lets the Temporal Web UI and CLI show encrypted workflow payloads.

    PAYLOAD_ENCRYPTION_KEY=... python codec_server.py [--port 8888] [--ui http://localhost:8233]
    temporal workflow show --workflow-id ID --codec-endpoint http://127.0.0.1:8888

Implements Temporal's remote codec protocol (POST /decode and /encode with {"payloads": [...]}).
It decrypts for whoever can reach it: bind it to loopback or put it behind your SSO, and set
CODEC_SERVER_TOKEN to require `Authorization: Bearer <token>` (`temporal ... --codec-auth`).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from backup.errors import ConfigurationError
from backup.settings import Settings
from client.codec import EncryptionCodec


def make_handler(
    codec: EncryptionCodec, ui_origin: str | None, token: str | None = None
) -> type[BaseHTTPRequestHandler]:
    expected = f"Bearer {token}".encode() if token else None

    class Handler(BaseHTTPRequestHandler):
        def _cors(self) -> None:
            if ui_origin and self.headers.get("Origin") == ui_origin:
                self.send_header("Access-Control-Allow-Origin", ui_origin)
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header(
                    "Access-Control-Allow-Headers", "content-type, x-namespace, authorization"
                )

        def end_headers(self) -> None:
            # On every answer, errors too: the UI (and its console) then sees a 401 as a 401,
            # not as a request the browser blocked.
            self._cors()
            super().end_headers()

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self.end_headers()

        def do_POST(self) -> None:
            offered = self.headers.get("Authorization", "").encode()
            if expected and not hmac.compare_digest(offered, expected):
                self.send_error(401, "Authorization: Bearer <CODEC_SERVER_TOKEN> required")
                return
            # The Web UI adds a query (?preserveStorageRefs=true): route on the path alone.
            path = urlsplit(self.path).path
            convert = {"/decode": codec.decode, "/encode": codec.encode}.get(path)
            if convert is None:
                self.send_error(404, "POST /decode or /encode")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                payloads = json_format.Parse(body, Payloads()).payloads
                result = Payloads(payloads=asyncio.run(convert(payloads)))
            except Exception as err:  # a bad request, or a payload of another key
                self.send_error(400, f"{type(err).__name__}: {err}"[:200])
                return
            out = json_format.MessageToJson(result).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *_: Any) -> None:
            pass  # payloads are personal data: log nothing

    return Handler


def serve(
    codec: EncryptionCodec, port: int, ui_origin: str | None, token: str | None = None
) -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("127.0.0.1", port), make_handler(codec, ui_origin, token))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--ui", help="Web UI origin allowed by CORS, e.g. http://localhost:8233")
    args = parser.parse_args()
    try:
        settings = Settings.from_environment()
        if settings.payload_encryption_key is None:
            raise ConfigurationError("set PAYLOAD_ENCRYPTION_KEY (the workers' key)")
        codec = EncryptionCodec.from_base64(
            settings.payload_encryption_key.get_secret_value(),
            settings.payload_encryption_key_id,
            settings.payload_previous_keys.get_secret_value(),
        )
    except ConfigurationError as err:
        sys.exit(f"codec server: {err}")
    token = settings.codec_server_token
    server = serve(codec, args.port, args.ui, token.get_secret_value() if token else None)
    print(f"codec server on http://127.0.0.1:{args.port}", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
