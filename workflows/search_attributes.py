"""Custom search attributes: list backups by project and by the step they are in.

They must be registered in the namespace (the dev stack and the worker do it; README)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
BACKUP_STEP = SearchAttributeKey.for_keyword("BackupStep")
ALL = [PROJECT_ID, BACKUP_STEP]
