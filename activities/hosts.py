"""Pick the host that will hold the spool for a run.

Runs on the shared task queue, so whichever live worker takes it answers with its own
worker-specific queue (samples-python `worker_specific_task_queues`).
"""

from __future__ import annotations

from temporalio import activity

from backup.settings import Settings


class HostActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="claim_host")
    async def claim_host(self) -> str:
        return self._settings.host_task_queue
