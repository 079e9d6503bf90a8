"""List the projects a fleet backup covers, one page at a time."""

from __future__ import annotations

from temporalio import activity

from activities.support import step_errors
from backup.fleet_models import ProjectPage
from backup.projects import list_active_project_ids
from backup.settings import Settings


class FleetActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="list_active_projects_v2")
    async def list_active_projects_v2(self, page: ProjectPage) -> list[str]:
        with step_errors("list_projects"):
            return await list_active_project_ids(
                self._settings.database_url.get_secret_value(), page.after, page.limit
            )

    @activity.defn(name="list_active_projects")
    async def list_active_projects(self, after: str | None, limit: int) -> list[str]:
        """What runs started before list_active_projects_v2 scheduled (patch
        fleet-typed-listing in workflows/fleet.py)."""
        return await self.list_active_projects_v2(ProjectPage(after=after, limit=limit))
