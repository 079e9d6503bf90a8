"""Storage backends behind one interface: `open_storage` builds the configured one,
`storage_for` the one that can read a given location."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from urllib.parse import urlparse

from backup.errors import BackupError, ConfigurationError
from backup.settings import Settings
from backup.signing import ManifestSigner
from backup.storage.base import Fetched, Signer, Storage, Stored, Transfer
from backup.storage.local import LocalStorage
from backup.storage.s3 import MIB, S3Storage
from backup.storage.telegram import TelegramStorage

SCHEMES = {"file": "local", "s3": "s3", "telegram": "telegram"}
# The start-up sweep holds the worker back at most this long (S3 blackholed: connect timeouts
# and retries), well within the 3 minutes a pinned run waits for its host.
SWEEP_SECONDS = 60.0

logger = logging.getLogger("export_backup.storage")


def signer(settings: Settings) -> Signer | None:
    if settings.manifest_signing_key_file is None:
        return None
    return ManifestSigner(settings.manifest_signing_key_file).sign


def open_storage(settings: Settings, backend: str | None = None) -> Storage:
    backend = backend or settings.storage_backend
    sign = signer(settings)
    if backend == "local":
        return LocalStorage(settings.local_storage_dir, sign, spool_dir=settings.spool_dir)
    if backend == "s3":
        if not settings.s3_bucket:
            raise ConfigurationError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        extra = {
            "ServerSideEncryption": settings.s3_server_side_encryption,
            "SSEKMSKeyId": settings.s3_sse_kms_key_id,
            "StorageClass": settings.s3_storage_class,
        }
        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
            part_size=settings.s3_part_size_mib * MIB,
            concurrency=settings.s3_concurrency,
            checksums=settings.s3_checksums,
            extra_put_args={k: v for k, v in extra.items() if v},
            sign=sign,
        )
    if backend == "telegram":
        if settings.telegram_bot_token is None or not settings.telegram_chat_id:
            raise ConfigurationError(
                "STORAGE_BACKEND=telegram needs TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID"
            )
        return TelegramStorage(
            settings.telegram_bot_token.get_secret_value(),
            settings.telegram_chat_id,
            api_url=settings.telegram_api_url,
            message_thread_id=settings.telegram_message_thread_id,
            part_size=settings.telegram_part_bytes,
            sign=sign,
        )
    raise ConfigurationError(f"STORAGE_BACKEND={backend!r}: use local, s3 or telegram")


def storage_for(location: str, settings: Settings) -> Storage:
    """The backend that reads `location` (file://, s3://, telegram://). The bucket or chat comes
    from the location, so S3_BUCKET or TELEGRAM_CHAT_ID need not be set (nor match) to fetch
    it; endpoint, credentials and token still come from the settings."""
    parsed = urlparse(location)
    backend = SCHEMES.get(parsed.scheme)
    if backend is None:
        raise ConfigurationError(f"{location!r}: unknown scheme; expected file, s3 or telegram")
    if backend == "s3" and parsed.netloc:
        settings = settings.model_copy(update={"s3_bucket": parsed.netloc})
    if backend == "telegram" and parsed.netloc:
        settings = settings.model_copy(update={"telegram_chat_id": parsed.netloc})
    return open_storage(settings, backend)


async def sweep_abandoned_uploads(settings: Settings, timeout: float = SWEEP_SECONDS) -> int:
    """At worker start: abort the multipart uploads runs left behind when S3 was unreachable
    for their whole upload and cleanup; returns how many. Never raises: a store that is down or
    refuses the listing costs one warning, never the worker's start (the next start retries)."""
    hours = settings.s3_abandoned_upload_hours
    try:
        async with asyncio.timeout(timeout):
            storage = open_storage(settings)
            aborted = await storage.abort_abandoned_uploads(timedelta(hours=hours))
    except Exception as err:  # any failure only skips this sweep
        # Our errors' messages are written to hold no secrets; others' might, so only the type.
        reason = (
            str(err)
            if isinstance(err, BackupError)
            else f"no answer within {timeout:g} s"
            if isinstance(err, TimeoutError)
            else type(err).__name__
        )
        logger.warning(
            "skipped the sweep of abandoned S3 multipart uploads (next start retries): %s", reason
        )
        return 0
    if aborted:
        logger.info(
            "aborted %d multipart uploads begun over %g hours ago (S3_ABANDONED_UPLOAD_HOURS)",
            aborted,
            hours,
        )
    return aborted


__all__ = [
    "Fetched",
    "Storage",
    "Stored",
    "Transfer",
    "open_storage",
    "storage_for",
    "sweep_abandoned_uploads",
]
