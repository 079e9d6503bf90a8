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

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

# backups/<project>/<UTC start>-<run8>.<ext>: the stamp is the workflow's start time (README).
BACKUP_NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<run>[A-Za-z0-9]+)\.(?P<ext>[A-Za-z0-9.]+)$")
MANIFEST_SUFFIX = ".manifest.json"  # backup.manifest.manifest_name
SIGNATURE_SUFFIX = ".sig"  # backup.signing; not imported so this module stays dependency-free
PARTIAL_SUFFIX = ".partial"  # backup.files.atomic_file: a write in flight
# The manifest goes first: from then on the backup no longer counts as good anywhere, and a
# delete that stops halfway leaves an orphan (reported) rather than a manifest without data.
DELETION_ORDER = ("manifest", "signature", "artifact")


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


@dataclass(frozen=True)
class StoredBackup:
    """One backup as a backend lists it. `keys` is what the backend deletes (object keys,
    paths relative to the storage root, or message ids), in DELETION_ORDER."""

    location: str  # of the artifact, as `store` returned it
    created_at: datetime  # UTC: the workflow's start time, from the key
    size_bytes: int  # of the artifact; 0 when the artifact itself is missing
    keys: tuple[str, ...]
    has_manifest: bool = True  # False: an orphan, never a candidate for retention


@dataclass(frozen=True)
class StoredObject:
    """One listed object (file, S3 object) of a project's backup folder."""

    key: str  # what the backend deletes it by
    name: str  # the last path component
    size_bytes: int


def created_at_of(name: str) -> datetime | None:
    """The UTC time in a backup's artifact name, or None when the name is not one of ours."""
    match = BACKUP_NAME.match(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:  # e.g. month 13: not written by us
        return None


def group_backups(
    objects: Iterable[StoredObject], location_of: Callable[[str], str]
) -> list[StoredBackup]:
    """Artifact, manifest and signature objects grouped into backups (newest first).

    Names that are not ours (or `*.partial`, a write in flight) are ignored: retention only ever
    touches what this tool stored. `location_of(artifact key)` is the backend's location.
    """
    groups: dict[str, tuple[datetime, dict[str, StoredObject]]] = {}
    for obj in objects:
        if obj.name.endswith(PARTIAL_SUFFIX):
            continue
        artifact, role = _artifact_of(obj.name)
        created_at = created_at_of(artifact)
        if created_at is None:
            continue
        artifact_key = obj.key[: len(obj.key) - len(obj.name)] + artifact
        groups.setdefault(artifact_key, (created_at, {}))[1][role] = obj
    backups = []
    for artifact_key, (created_at, roles) in groups.items():
        backups.append(
            StoredBackup(
                location=location_of(artifact_key),
                created_at=created_at,
                size_bytes=roles["artifact"].size_bytes if "artifact" in roles else 0,
                keys=tuple(roles[r].key for r in DELETION_ORDER if r in roles),
                has_manifest="artifact" in roles and "manifest" in roles,
            )
        )
    return sorted(backups, key=_newest_first)


def _artifact_of(name: str) -> tuple[str, str]:
    if name.endswith(MANIFEST_SUFFIX + SIGNATURE_SUFFIX):
        return name.removesuffix(MANIFEST_SUFFIX + SIGNATURE_SUFFIX), "signature"
    if name.endswith(MANIFEST_SUFFIX):
        return name.removesuffix(MANIFEST_SUFFIX), "manifest"
    return name, "artifact"


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
    complete.sort(key=_newest_first)
    plan.orphans.sort(key=_newest_first)

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
            bucket = period(_utc(backup.created_at))
            if bucket not in seen:
                seen.add(bucket)
                keep(backup, f"{rule} {bucket}")
    for backup in complete:
        (plan.keep if backup.location in plan.reasons else plan.prune).append(backup)
    return plan


def _newest_first(backup: StoredBackup) -> tuple[float, str]:
    # The location breaks ties of backups started in the same second (run ids differ).
    return (-_utc(backup.created_at).timestamp(), backup.location)


def _utc(moment: datetime) -> datetime:
    """Aware datetimes in UTC; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
