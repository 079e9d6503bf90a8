"""Which stored backups to keep: a pure plan, no I/O (backup.prune applies it to a storage).

Rules, each optional, evaluated over complete backups (artifact and manifest both stored):

- `keep_last`: the newest N backups;
- `keep_daily` / `keep_weekly` / `keep_monthly` (grandfather-father-son): the newest backup of
  each of the last N distinct UTC days / ISO weeks / months that have a backup, so a gap (no
  backups for a while) costs no slot;
- a backup is kept when any rule keeps it; `min_keep` (at least 1) newest are always kept, so
  the newest backup is never pruned; with no rule set nothing is pruned at all.

Only complete backups count. Anything without a manifest (an upload that stopped halfway, or
one still in flight) is an orphan: reported, never counted as a good backup and never deleted
here. A failing backup stores no manifest (the manifest goes last, after the artifact is
verified in storage), so it can never push the last good backup out of the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backup.layout import StoredBackup, as_utc, newest_first


class RetentionPolicy(BaseModel):
    """What to keep of one project's backups. Unset rules keep nothing on their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # 0 is refused rather than read as "off": unset a rule to turn it off.
    keep_last: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=None, ge=1)
    keep_weekly: int | None = Field(default=None, ge=1)
    keep_monthly: int | None = Field(default=None, ge=1)
    min_keep: int = Field(default=1, ge=1)

    @property
    def active(self) -> bool:
        return any(
            n is not None
            for n in (self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)
        )

    def describe(self) -> str:
        rules = [
            f"{name} {value}"
            for name, value in (
                ("last", self.keep_last),
                ("daily", self.keep_daily),
                ("weekly", self.keep_weekly),
                ("monthly", self.keep_monthly),
            )
            if value is not None
        ]
        if not rules:
            return "no retention rule: every backup is kept"
        return f"keep {', '.join(rules)}; always the newest {self.min_keep}"


@dataclass
class RetentionPlan:
    keep: list[StoredBackup] = field(default_factory=list)  # newest first
    prune: list[StoredBackup] = field(default_factory=list)  # newest first
    orphans: list[StoredBackup] = field(default_factory=list)  # no manifest: left alone
    reasons: dict[str, list[str]] = field(default_factory=dict)  # location -> why it is kept


def plan_retention(backups: Iterable[StoredBackup], policy: RetentionPolicy) -> RetentionPlan:
    """Split `backups` into keep, prune and orphans (see the module docstring)."""
    plan = RetentionPlan()
    complete: list[StoredBackup] = []
    for backup in backups:
        (complete if backup.has_manifest else plan.orphans).append(backup)
    complete.sort(key=newest_first)
    plan.orphans.sort(key=newest_first)

    def keep(backup: StoredBackup, reason: str) -> None:
        plan.reasons.setdefault(backup.location, []).append(reason)

    if not policy.active:
        for backup in complete:
            keep(backup, "no retention rule")
    for index, backup in enumerate(complete[: policy.min_keep]):
        keep(backup, f"newest {index + 1} of min_keep {policy.min_keep}")
    for index, backup in enumerate(complete[: policy.keep_last or 0]):
        keep(backup, f"last {index + 1}/{policy.keep_last}")
    for rule, count, period in (
        ("daily", policy.keep_daily, _day),
        ("weekly", policy.keep_weekly, _iso_week),
        ("monthly", policy.keep_monthly, _month),
    ):
        seen: set[str] = set()
        for backup in complete:  # newest first: the first one of a period is its newest
            if count is None or len(seen) >= count:
                break
            bucket = period(as_utc(backup.created_at))
            if bucket not in seen:
                seen.add(bucket)
                keep(backup, f"{rule} {bucket}")
    for backup in complete:
        (plan.keep if backup.location in plan.reasons else plan.prune).append(backup)
    return plan


def _day(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d}"


def _iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _month(moment: datetime) -> str:
    return f"{moment:%Y-%m}"


class RetentionOutcome(BaseModel):
    """What one retention run did for one project (a retention problem never fails a backup:
    failures are in `errors`, and `skipped_reason` says why nothing was applied)."""

    project_id: str
    policy: str  # RetentionPolicy.describe()
    dry_run: bool = False
    kept: list[str] = Field(default_factory=list)  # locations, newest first
    pruned: list[str] = Field(default_factory=list)  # deleted (dry run: would be deleted)
    orphans: list[str] = Field(default_factory=list)  # without a manifest: not touched
    errors: list[str] = Field(default_factory=list)
    skipped_reason: str | None = None
