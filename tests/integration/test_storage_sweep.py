"""The worker's start-up sweep of multipart uploads that runs left behind when S3 was gone for
their whole upload and cleanup, against the real SeaweedFS of the contract suite: old ones under
the deployment's `[S3_PREFIX/]backups/` are aborted (through every page of the listing), fresh
ones and everything outside the prefix stay, and a store that is down or refuses the listing
costs one warning, never an exception."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from backup.settings import Settings
from backup.storage import s3_multipart, sweep_abandoned_uploads
from backup.storage.s3 import S3Storage
from devstack.seaweed import SeaweedS3
from tests.backends import s3_backend
from workflows import policies

HOURS = timedelta(hours=72)


@pytest.fixture
def uploads(seaweed: SeaweedS3) -> Iterator[dict[str, str]]:
    """Creates multipart uploads (key -> upload id) and aborts what a test leaves."""
    created: dict[str, str] = {}
    yield created
    s3 = seaweed.client()
    for key, upload_id in created.items():
        with contextlib.suppress(ClientError):  # already aborted by the sweep
            s3.abort_multipart_upload(Bucket=seaweed.bucket, Key=key, UploadId=upload_id)


def _create(seaweed: SeaweedS3, uploads: dict[str, str], key: str) -> None:
    answer = seaweed.client().create_multipart_upload(Bucket=seaweed.bucket, Key=key)
    uploads[key] = answer["UploadId"]


def _open(seaweed: SeaweedS3, prefix: str) -> set[str]:
    listed = seaweed.client().list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix)
    return {upload["Key"] for upload in listed.get("Uploads", [])}


async def test_old_uploads_under_the_prefix_are_aborted_fresh_and_foreign_ones_kept(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, uploads: dict[str, str]
) -> None:
    backend = s3_backend(seaweed, monkeypatch)  # each call picks another S3_PREFIX
    prefix = backend.settings.s3_prefix
    old = f"{prefix}/backups/acme/20261120T120000Z-00000001.dump.zst"
    foreign = [
        f"{prefix}-other/backups/acme/old.dump.zst",  # another deployment sharing the name
        f"{prefix}/elsewhere/old.dump.zst",  # this prefix, but not backups/
        f"sweep-{prefix}/backups/acme/old.dump.zst",
    ]
    for key in [old, *foreign]:
        _create(seaweed, uploads, key)
    time.sleep(1.5)  # SeaweedFS's Initiated has whole seconds
    between = datetime.now(UTC)
    time.sleep(1.5)
    fresh = f"{prefix}/backups/acme/20261126T120000Z-00000002.dump.zst"
    _create(seaweed, uploads, fresh)

    # Seen from 72 hours after `between`: `old` is older than the threshold, `fresh` is not.
    assert await backend.storage.abort_abandoned_uploads(HOURS, now=between + HOURS) == 1

    assert _open(seaweed, f"{prefix}/") == {fresh, foreign[1]}
    assert _open(seaweed, f"{prefix}-other/") == {foreign[0]}
    assert _open(seaweed, f"sweep-{prefix}/") == {foreign[2]}


async def test_every_page_of_the_listing_is_swept(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, uploads: dict[str, str]
) -> None:
    backend = s3_backend(seaweed, monkeypatch)
    prefix = backend.settings.s3_prefix
    monkeypatch.setattr(s3_multipart, "LIST_UPLOADS_PAGE", 2)
    for i in range(7):
        _create(seaweed, uploads, f"{prefix}/backups/p{i % 3}/run-{i}.dump.zst")
    later = datetime.now(UTC) + HOURS
    assert await backend.storage.abort_abandoned_uploads(timedelta(0), later) == 7
    assert _open(seaweed, f"{prefix}/") == set()


async def test_worker_sweep_uses_the_setting_and_keeps_live_uploads(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, uploads: dict[str, str]
) -> None:
    settings = s3_backend(seaweed, monkeypatch).settings
    live = f"{settings.s3_prefix}/backups/acme/live.dump.zst"
    _create(seaweed, uploads, live)
    assert await sweep_abandoned_uploads(settings) == 0  # 72 hours by default
    assert _open(seaweed, f"{settings.s3_prefix}/") == {live}
    # A tiny threshold takes it: the setting reaches the sweep.
    time.sleep(1.5)
    eager = settings.model_copy(update={"s3_abandoned_upload_hours": 1 / 3600})
    assert await sweep_abandoned_uploads(eager) == 1
    assert _open(seaweed, f"{settings.s3_prefix}/") == set()


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "export_backup.storage"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_s3_is_one_warning_not_an_exception(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = s3_backend(seaweed, monkeypatch).settings
    gone = settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{_closed_port()}"})
    with caplog.at_level(logging.INFO, logger="export_backup.storage"):
        assert await sweep_abandoned_uploads(gone) == 0
    [record] = _ours(caplog)
    assert record.levelno == logging.WARNING and "unreachable" in record.getMessage()
    assert seaweed.secret_key not in caplog.text


async def test_denied_listing_is_one_warning_without_the_secret(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = s3_backend(seaweed, monkeypatch).settings
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    with caplog.at_level(logging.INFO, logger="export_backup.storage"):
        assert await sweep_abandoned_uploads(settings) == 0
    [record] = _ours(caplog)
    assert record.levelno == logging.WARNING and "AWS_SECRET_ACCESS_KEY" in record.getMessage()
    assert "wrong-secret-value" not in caplog.text and seaweed.secret_key not in caplog.text


async def test_a_sweep_that_hangs_is_cut_short(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = s3_backend(seaweed, monkeypatch).settings

    async def hang(*_: object, **__: object) -> int:
        await asyncio.sleep(30)
        return 0

    monkeypatch.setattr(S3Storage, "abort_abandoned_uploads", hang)
    with caplog.at_level(logging.INFO, logger="export_backup.storage"):
        assert await sweep_abandoned_uploads(settings, timeout=0.2) == 0
    [record] = _ours(caplog)
    assert record.levelno == logging.WARNING and "no answer within 0.2 s" in record.getMessage()


async def test_other_backends_do_not_sweep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(storage_backend="local", local_storage_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="export_backup.storage"):
        assert await sweep_abandoned_uploads(settings) == 0
    assert _ours(caplog) == []


def test_default_threshold_outlives_the_longest_upload() -> None:
    """An upload id lives through one upload activity's attempts (a run moved to another host
    starts a new one): each attempt may run its whole start-to-close and wait for its host,
    with backoff between attempts. The default must exceed that, or it could abort a live one."""
    retry = policies.UPLOAD.retry
    attempts = retry.maximum_attempts
    assert retry.maximum_interval is not None and policies.UPLOAD.schedule_to_start is not None
    backoff = sum(
        min(
            retry.initial_interval.total_seconds() * retry.backoff_coefficient**n,
            retry.maximum_interval.total_seconds(),
        )
        for n in range(attempts - 1)
    )
    longest = (
        attempts
        * (policies.UPLOAD.start_to_close + policies.UPLOAD.schedule_to_start).total_seconds()
        + backoff
    )
    assert longest / 3600 < 61 < Settings.model_fields["s3_abandoned_upload_hours"].default
