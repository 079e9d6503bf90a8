"""The one Telegram Bot API client, used by Telegram storage and Telegram notifications.

429 "Too Many Requests" has one policy: Telegram says how long to wait (`parameters.retry_after`,
or the Retry-After header), and the client waits exactly that long and tries again, as long as
the waits together stay within `max_wait` seconds. A wait that would go past it is not taken:
the call fails at once with a retryable BotApiError naming Telegram's retry_after, so the
activity's own retry takes over instead of sleeping past its timeout (a notification has a
minute, an upload hours: each caller sets its budget).

The token is part of every URL, so it is redacted from every message; errors are raised outside
httpx's except blocks, so no httpx exception (its request holds the URL) rides along as context;
httpx's own request log (which prints URLs) is kept below INFO.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import quote

import httpx

CLOUD_API = "https://api.telegram.org"
MAX_WAIT_SECONDS = 120.0  # the default budget for 429 waits per call
CHUNK = 1024 * 1024

logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry the token


class BotApiError(Exception):
    """A failed call. `status` is None when no answer came; `description` is Telegram's text
    (redacted); `retryable` says whether the same call may succeed later."""

    def __init__(
        self, message: str, *, status: int | None, description: str, retryable: bool
    ) -> None:
        super().__init__(message)
        self.status = status
        self.description = description
        self.retryable = retryable


def redact_token(text: str, token: str) -> str:
    """`text` without the bot token, as given or URL-encoded (as it appears in a URL)."""
    for form in (token, quote(token, safe="")):
        text = text.replace(form, "<TELEGRAM_BOT_TOKEN>")
    return text


class BotApi:
    """`async with BotApi(token, api_url) as bot:` then `await bot.call("sendMessage", ...)`."""

    def __init__(
        self,
        token: str,
        api_url: str = CLOUD_API,
        *,
        timeout: float = 30.0,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self._token = token
        self.api_url = api_url.rstrip("/")
        self.max_wait = max_wait
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(timeout=self._timeout)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def redact(self, text: str) -> str:
        return redact_token(text, self._token)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("use BotApi as `async with BotApi(...) as bot`")
        return self._client

    async def call(
        self,
        method: str,
        *,
        files: Any = None,
        on_answer: Callable[[], object] | None = None,
        **fields: Any,
    ) -> Any:
        """One Bot API method with form fields (None values are left out); its `result`.
        `on_answer()` runs for every answer received, 429s included (for request logs)."""
        data = {k: str(v) for k, v in fields.items() if v is not None}
        url = f"{self.api_url}/bot{self._token}/{method}"
        waited = 0.0
        while True:
            response: httpx.Response | None = None
            failure: BotApiError | None = None
            try:
                response = await self.client.post(url, data=data, files=files)
            except Exception as err:  # no answer: the network, or a URL httpx can not use
                failure = self._unanswered(method, err)
            if failure is not None:
                raise failure
            assert response is not None
            if on_answer is not None:
                on_answer()
            body = _json_or_empty(response) or {"description": response.text[:200]}
            if body.get("ok") and response.is_success:
                return body["result"]
            description = str(body.get("description", ""))
            if response.status_code == 429:
                wait = _retry_after(response, body)
                if waited + wait <= self.max_wait:
                    waited += wait
                    await asyncio.sleep(wait)
                    continue
            raise self._failed(method, response.status_code, description, waited)

    async def download(self, file_path: str, out: IO[bytes]) -> tuple[int, str]:
        """Stream the file at `file_path` (from getFile) into `out`; its length and SHA-256
        (hex). A 429 before the body is waited out as for `call`."""
        url = f"{self.api_url}/file/bot{self._token}/{file_path}"
        waited = 0.0
        while True:
            digest, length, failure, wait = hashlib.sha256(), 0, None, None
            try:
                async with self.client.stream("GET", url) as response:
                    if response.status_code == 429:
                        await response.aread()
                        wait = _retry_after(response, _json_or_empty(response))
                        if waited + wait > self.max_wait:
                            failure = self._failed("file download", 429, "", waited)
                    else:
                        response.raise_for_status()  # its message holds the URL: redacted below
                        async for chunk in response.aiter_bytes(CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            length += len(chunk)
            except Exception as err:
                failure = self._unanswered("file download", err)
            if failure is not None:
                raise failure
            if wait is None:
                return length, digest.hexdigest()
            waited += wait
            await asyncio.sleep(wait)

    def _unanswered(self, method: str, err: Exception) -> BotApiError:
        status = err.response.status_code if isinstance(err, httpx.HTTPStatusError) else None
        config = not isinstance(err, httpx.HTTPError) or isinstance(err, httpx.UnsupportedProtocol)
        hint = ": check TELEGRAM_API_URL" if config else ""
        return BotApiError(
            self.redact(f"Telegram {method} at {self.api_url}: {err!r}{hint}"),
            status=status,
            description="",
            retryable=not config and (status is None or status >= 500 or status == 429),
        )

    def _failed(self, method: str, status: int, description: str, waited: float) -> BotApiError:
        text = self.redact(description)
        message = f"Telegram {method}: {status} {text}".rstrip()
        if status == 429:
            message += (
                f" (waited {waited:g} s of the {self.max_wait:g} s this call may wait for rate"
                " limits; a later attempt continues)"
            )
        return BotApiError(
            message, status=status, description=text, retryable=status >= 500 or status == 429
        )


def _retry_after(response: httpx.Response, body: dict[str, Any]) -> float:
    """Telegram's wait in seconds: the JSON parameter, else the header, else 1."""
    parameters = body.get("parameters")
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if value is None:
        value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
