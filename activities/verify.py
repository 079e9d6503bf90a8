"""Check the spooled artifact: within the size cap and byte-identical to what was dumped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio import activity

from activities.support import Blocking, step_errors
from backup.manifest import Manifest
from backup.models import DumpedArtifact
from backup.settings import Settings
from backup.spool import UPLOAD_JOURNAL
from backup.storage.s3_stream import verify_streamed
from backup.verify import verify_spooled


class VerifyActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="verify_artifact")
    async def verify_artifact(self, artifact: DumpedArtifact) -> None:
        await verify(artifact, self._settings.backup_max_bytes)


async def verify(
    artifact: DumpedArtifact, max_bytes: int, resume: dict[str, Any] | None = None
) -> None:
    """The verify step (verify_artifact, and store_artifact before it uploads). `resume`: the
    upload state store_artifact carries in its heartbeats, kept in those of this step."""
    with step_errors("verify"):
        async with Blocking("verifying") as blocking:
            blocking.progress.resume = resume
            await blocking.run(lambda _: _verify(artifact, max_bytes))


def _verify(artifact: DumpedArtifact, max_bytes: int) -> None:
    """In a thread; hashing is not stopped midway, a cancellation waits for it to end."""
    source, manifest = Path(artifact.artifact_path), Path(artifact.manifest_path)
    # SPOOL_MODE=stream: no spool file, the journal's parts must add up to the dump.
    journal = source.with_name(UPLOAD_JOURNAL)
    if source.exists() or not manifest.exists():
        verify_spooled(source, manifest, max_bytes)
    elif not verify_streamed(journal, Manifest.read(manifest), max_bytes):
        verify_spooled(source, manifest, max_bytes)  # says what is missing
