"""Upload the spooled artifact and its manifest to the configured storage, resumably.

The backend's resumable state (S3 upload id, Telegram parts sent) travels in the heartbeat
details and in a journal beside the spool file; a retry on this host continues from whichever
is newer instead of starting over.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from temporalio import activity

from activities.support import ByteProgress, count_bytes, heartbeating, step_errors
from backup import layout
from backup.errors import IntegrityError
from backup.files import atomic_file
from backup.manifest import Manifest
from backup.models import DumpedArtifact, StoredArtifact
from backup.settings import Settings
from backup.spool import UPLOAD_JOURNAL
from backup.storage import Transfer, open_storage

JOURNAL = UPLOAD_JOURNAL


class UploadActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="upload_artifact")
    async def upload_artifact(self, artifact: DumpedArtifact, key_stem: str) -> StoredArtifact:
        return await upload(artifact, key_stem, self._settings)


async def upload(artifact: DumpedArtifact, key_stem: str, settings: Settings) -> StoredArtifact:
    """The upload step (upload_artifact, and store_artifact once it has verified). Keys are
    fixed per workflow run, so a retried upload resumes or overwrites its own object, never
    adds another."""
    started = time.monotonic()
    source = Path(artifact.artifact_path)
    journal = source.with_name(JOURNAL)
    progress = ByteProgress("uploading", total=artifact.size_bytes)
    previous = _previous_state(journal)
    progress.resume = heartbeat_state(previous)

    def checkpoint(state: dict[str, Any]) -> None:
        progress.resume = state
        with atomic_file(journal) as f:
            f.write(json.dumps(state).encode())

    transfer = Transfer(resume=previous, on_progress=progress.update, on_checkpoint=checkpoint)
    with step_errors("upload"):
        manifest = Manifest.read(Path(artifact.manifest_path))
        refuse_unexpected_plaintext(manifest, settings.recipients_for(manifest.project_id))
        storage = open_storage(settings)
        async with heartbeating(progress):
            stored = await storage.store(
                source,
                manifest,
                layout.artifact_key(key_stem, artifact.file_name),
                transfer,
            )
    journal.unlink(missing_ok=True)
    count_bytes("export_backup_bytes_uploaded", artifact.size_bytes)
    return StoredArtifact(
        location=stored.location,
        manifest_location=stored.manifest_location,
        upload_seconds=round(time.monotonic() - started, 3),
    )


def upload_state(artifact: DumpedArtifact) -> dict[str, Any] | None:
    """What a previous attempt's upload left to resume from, as heartbeats carry it."""
    return heartbeat_state(_previous_state(Path(artifact.artifact_path).with_name(JOURNAL)))


def heartbeat_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    # Parts sent while dumping are listed in the journal only: up to 10,000 of them would
    # not fit a heartbeat, and another host has no spool to resume them from anyway.
    return state and {k: v for k, v in state.items() if k != "parts"}


def refuse_unexpected_plaintext(manifest: Manifest, recipients: list[str]) -> None:
    """The last gate before anything leaves the host: when the configuration encrypts this
    project's backups, an artifact that is not encrypted to exactly those keys never leaves."""
    wanted = sorted(key.strip() for key in recipients)
    stored = sorted(key.strip() for key in manifest.recipients)
    if wanted and (manifest.encryption is None or stored != wanted):
        state = "encrypted to other keys" if manifest.encryption else "not encrypted"
        raise IntegrityError(
            f"refusing to upload {manifest.artifact}: project {manifest.project_id}'s backups "
            f"must be encrypted to {len(wanted)} configured recipient(s) but it is {state}; "
            "nothing was uploaded (did the encryption settings change mid-backup? start it again)"
        )


def _previous_state(journal: Path) -> dict[str, Any] | None:
    """The journal on this host, else the last heartbeat of a previous attempt."""
    if journal.exists():
        return json.loads(journal.read_text())  # type: ignore[no-any-return]
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], dict):
        return details[0].get("resume")
    return None
