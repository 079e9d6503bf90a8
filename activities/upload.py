"""Upload the spooled artifact, then its manifest, to the configured storage."""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath

from temporalio import activity

from activities.support import ByteProgress, count_bytes, heartbeating, step_errors
from backup.models import DumpedArtifact, StoredArtifact
from backup.settings import Settings
from backup.storage import open_storage


class UploadActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="upload_artifact")
    async def upload_artifact(self, artifact: DumpedArtifact, key_stem: str) -> StoredArtifact:
        """Keys are fixed per workflow run, so a retried upload overwrites its own object."""
        started = time.monotonic()
        folder = PurePosixPath(key_stem).parent
        manifest = Path(artifact.manifest_path)
        progress = ByteProgress("uploading", total=artifact.size_bytes)
        with step_errors("upload"):
            storage = open_storage(self._settings)
            async with heartbeating(progress):
                location = await storage.put(
                    Path(artifact.artifact_path), str(folder / artifact.file_name), progress.update
                )
                # The manifest goes last: its presence says the artifact is complete.
                manifest_location = await storage.put(
                    manifest, str(folder / manifest.name), lambda _: None
                )
        count_bytes("export_backup_bytes_uploaded", artifact.size_bytes)
        return StoredArtifact(
            location=location,
            manifest_location=manifest_location,
            upload_seconds=round(time.monotonic() - started, 3),
        )
