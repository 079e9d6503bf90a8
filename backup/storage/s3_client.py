"""The S3 client every S3Storage of a worker shares: one per event loop, credential
environment and endpoint, opened once."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from botocore.config import Config

# A session is reused while these are unchanged (credentials rotated in the environment win).
CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def _credential_env() -> tuple[object, ...]:
    # Per thread too: botocore sessions are not safe to share between threads.
    return (threading.get_ident(), *(os.environ.get(name) for name in CREDENTIAL_ENV))


@functools.lru_cache(maxsize=8)
def _session(_env: tuple[object, ...]) -> aioboto3.Session:
    """A session per credential environment, reused: a new one loads botocore's data and the
    credential chain again, which costs 0.3-1 s per upload, cleanup or retention listing on a
    busy 2-core box (bench/results.md) and dominates small backups."""
    return aioboto3.Session()


CLIENT_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=10,
    read_timeout=120,
    # Our own SHA-256/MD5 checks cover integrity; CRC headers confuse some S3 clones.
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    # One client serves every upload of the worker at once (S3_CONCURRENCY parts each).
    max_pool_connections=64,
)
# UploadPart and PutObject bodies that carry their SHA-256 as a signed header (S3_CHECKSUMS)
# are sent with an unsigned payload: the store checks the body against that header, so a body
# changed in transit is refused as surely as with a signed payload, and botocore does not hash
# every part once more (over plain http it otherwise always does; over https it already skips
# streaming bodies with a Content-MD5). Every other request keeps botocore's choice.
CHECKSUMMED_UPLOADS = ("UploadPart", "PutObject")
# Open clients per (event loop, credential environment, endpoint, region).
_clients: dict[tuple[object, ...], asyncio.Task[tuple[AsyncExitStack, Any]]] = {}


async def shared_client(endpoint_url: str | None, region: str | None) -> Any:
    """One open client per event loop, credential environment and endpoint, kept for the life
    of the loop: opening one (service model, endpoint rules, an aiohttp connector with its SSL
    context) took 40% of the worker's CPU in a tiny backup when every upload, cleanup and
    retention step opened its own (bench/results.md). Rotated credentials open a new one."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _clients if k[0] is not loop and _clients[k].get_loop().is_closed()]:
        del _clients[key]  # its loop is gone, and its sockets with it
    key = (loop, _credential_env(), endpoint_url, region)
    opening = _clients.get(key)
    if opening is None or (opening.done() and opening.exception() is not None):
        opening = _clients[key] = loop.create_task(_open_client(endpoint_url, region))
    return (await asyncio.shield(opening))[1]


async def _open_client(endpoint_url: str | None, region: str | None) -> tuple[AsyncExitStack, Any]:
    stack = AsyncExitStack()
    return stack, await stack.enter_async_context(open_client(endpoint_url, region))


def _payload_signing(request: Any, operation_name: str, **_: Any) -> None:
    """before-sign: no payload hash for a body whose signed SHA-256 header the store verifies."""
    if operation_name in CHECKSUMMED_UPLOADS and "x-amz-checksum-sha256" in request.headers:
        config = request.context["client_config"]  # the client's own, whatever it was given
        s3 = {**(config.s3 or {}), "payload_signing_enabled": False}
        request.context["client_config"] = config.merge(Config(s3=s3))


def open_client(endpoint_url: str | None, region: str | None) -> Any:
    """A new client (an async context manager); everything else uses `shared_client`."""
    return _Client(
        _session(_credential_env()).client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=CLIENT_CONFIG
        )
    )


class _Client:
    """aioboto3's client context manager, with our request hooks registered on entry."""

    def __init__(self, opening: Any) -> None:
        self._opening = opening

    async def __aenter__(self) -> Any:
        client = await self._opening.__aenter__()
        client.meta.events.register("before-sign.s3", _payload_signing)
        return client

    async def __aexit__(self, *exc: object) -> Any:
        return await self._opening.__aexit__(*exc)


async def close_shared_clients() -> None:
    """Close this event loop's clients (worker shutdown, tests)."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _clients if k[0] is loop]:
        opening = _clients.pop(key)
        if opening.done() and opening.exception() is None:
            await opening.result()[0].aclose()
