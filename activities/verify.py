"""Check the spooled artifact: within the size cap and byte-identical to what was dumped."""

from __future__ import annotations

from pathlib import Path

from temporalio import activity

from activities.support import SyncHeartbeat, step_errors
from backup.models import DumpedArtifact
from backup.settings import Settings
from backup.verify import verify_spooled


class VerifyActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="verify_artifact")
    def verify_artifact(self, artifact: DumpedArtifact) -> None:
        with step_errors("verify"), SyncHeartbeat("verifying"):
            verify_spooled(
                Path(artifact.artifact_path),
                Path(artifact.manifest_path),
                self._settings.backup_max_bytes,
            )
