"""Validate the project: it exists, is ACTIVE, and its schema is there."""

from __future__ import annotations

from temporalio import activity

from activities.support import step_errors
from backup.models import Project
from backup.projects import find_active_project
from backup.settings import Settings


class ProjectActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="validate_project")
    async def validate_project(self, project_id: str) -> Project:
        with step_errors("validate"):
            s = self._settings
            return await find_active_project(
                s.database_url.get_secret_value(), project_id, s.small_schema_max_bytes
            )
