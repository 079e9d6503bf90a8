"""Apply a retention policy to one project's backups in a storage (the plan is backup.retention).

Never raises for a storage problem: a retention run that can not list or delete records why in
the outcome, because a retention problem must never fail the backup it runs after. What could
not be deleted is tried again by the next run, which lists it again.
"""

from __future__ import annotations

import logging
import re

from backup.errors import BackupError, ListingNotSupported
from backup.models import PROJECT_ID_PATTERN
from backup.retention import RetentionOutcome, RetentionPolicy, plan_retention
from backup.storage.base import Storage

log = logging.getLogger(__name__)


async def apply_retention(
    storage: Storage, project_id: str, policy: RetentionPolicy, dry_run: bool = False
) -> RetentionOutcome:
    outcome = RetentionOutcome(project_id=project_id, policy=policy.describe(), dry_run=dry_run)
    if not re.fullmatch(PROJECT_ID_PATTERN, project_id):
        outcome.skipped_reason = f"{project_id!r} is not a valid project id"
        return outcome
    if not policy.active:  # nothing could be pruned: do not even list
        outcome.skipped_reason = "no retention rule configured: every backup is kept"
        return outcome
    try:
        backups = await storage.list_backups(project_id)
    except ListingNotSupported as err:
        outcome.skipped_reason = str(err)
        return outcome
    except Exception as err:
        outcome.errors.append(f"listing the backups of {project_id}: {_described(err)}")
        outcome.skipped_reason = "the backups could not be listed; nothing was deleted"
        return outcome

    plan = plan_retention(backups, policy)
    outcome.kept = [b.location for b in plan.keep]
    outcome.orphans = [b.location for b in plan.orphans]
    for backup in plan.prune:
        if dry_run:
            outcome.pruned.append(backup.location)
            continue
        try:
            await storage.delete_backup(backup)
        except Exception as err:
            outcome.errors.append(f"deleting {backup.location}: {_described(err)}")
        else:
            outcome.pruned.append(backup.location)
    for error in outcome.errors:
        log.warning("retention of %s: %s", project_id, error)
    return outcome


def _described(err: Exception) -> str:
    """Domain errors are written to be shown (secrets redacted); of anything else only the type,
    because its text might carry a URL with a token in it."""
    if isinstance(err, BackupError):
        return str(err)
    return f"unexpected {type(err).__name__}"
