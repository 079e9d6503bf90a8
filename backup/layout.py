"""Where a backup lives in storage: its key, the names beside it, and reading them back.

    backups/<project>/<UTC start>-<run>       the key stem (the workflow's), then
        <stem>.<format>[.<compression>][.age]   the artifact (e.g. .dump.zst, .dir.tar.age)
        <artifact>.manifest.json                its manifest
        <artifact>.manifest.json.sig            the manifest's signature, when signed
        <name>.partial                          a write in flight (never a backup)

The stamp is the workflow's start time and the run id tells runs apart, so a key is
deterministic per workflow run (a retried upload overwrites its own object). The workflow builds
the key stem, the dump adds the artifact's extensions, every backend stores the manifest and
signature beside the artifact, and retention reads the listing back through `group_backups`.
Existing buckets hold keys in exactly this form: change nothing here without keeping them
parseable (tests/unit/test_layout.py holds old keys).

No dependency beyond the standard library: the workflow sandbox, the models and retention all
import it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath

ROOT = "backups"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# By DumpFormat / Compression value: the suffixes name the layers to peel off, outermost last.
FORMAT_EXTENSION = {"custom": ".dump", "sql": ".sql", "tar": ".tar", "directory": ".dir.tar"}
COMPRESSION_EXTENSION = {"zstd": ".zst", "gzip": ".gz", "none": ""}
ENCRYPTED_EXTENSION = ".age"
MANIFEST_SUFFIX = ".manifest.json"
SIGNATURE_SUFFIX = ".sig"
PARTIAL_SUFFIX = ".partial"  # backup.files.atomic_file: a write in flight

# <stamp>-<run>.<extensions>; runs stored before the 12-digit run ids had 8.
_ARTIFACT = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<run>[A-Za-z0-9]+)(?P<ext>\.[A-Za-z0-9.]+)$")


class Role(StrEnum):
    ARTIFACT = "artifact"
    MANIFEST = "manifest"
    SIGNATURE = "signature"


# The manifest goes first: from then on the backup no longer counts as good anywhere, and a
# delete that stops halfway leaves an orphan (reported) rather than a manifest without data.
DELETION_ORDER = (Role.MANIFEST, Role.SIGNATURE, Role.ARTIFACT)


def short_run_id(run_id: str) -> str:
    """12 hex digits that tell runs apart in names. The last ones: run ids are UUIDv7, whose
    leading digits are a timestamp shared by runs started close together."""
    return run_id.replace("-", "")[-12:]


def project_prefix(project_id: str) -> str:
    """The folder (key prefix) that holds every backup of one project."""
    return f"{ROOT}/{project_id}/"


def key_stem(project_id: str, started_at: datetime, run_id: str) -> str:
    """`backups/<project>/<UTC start>-<short run id>`: the artifact's key without extensions."""
    return f"{project_prefix(project_id)}{as_utc(started_at):{STAMP_FORMAT}}-{short_run_id(run_id)}"


def artifact_name(base_name: str, fmt: str, compression: str, *, encrypted: bool = False) -> str:
    """A directory artifact is a plain tar whatever its compression: pg_dump compressed the
    files inside it."""
    outer = "" if fmt == "directory" else COMPRESSION_EXTENSION[compression]
    return base_name + FORMAT_EXTENSION[fmt] + outer + (ENCRYPTED_EXTENSION if encrypted else "")


def artifact_key(stem: str, file_name: str) -> str:
    """The artifact's key: its file name (stem plus extensions) in the stem's folder."""
    return str(PurePosixPath(stem).parent / file_name)


def manifest_name(artifact: str) -> str:
    """The manifest sits beside its artifact, named after it (a name, a key or a path)."""
    return artifact + MANIFEST_SUFFIX


def signature_name(artifact: str) -> str:
    return manifest_name(artifact) + SIGNATURE_SUFFIX


@dataclass(frozen=True)
class BackupName:
    """A stored name read back: which backup it belongs to and what it is."""

    artifact: str  # the artifact's name (the last key component)
    role: Role
    created_at: datetime  # UTC, from the stamp
    run: str  # the short run id
    extension: str  # the artifact's extensions, e.g. ".dump.zst.age"


def parse_name(name: str) -> BackupName | None:
    """The backup a name (last key component) belongs to, or None when it is not one of ours
    (including `*.partial`, a write in flight)."""
    if name.endswith(PARTIAL_SUFFIX):
        return None
    artifact, role = name, Role.ARTIFACT
    if name.endswith(MANIFEST_SUFFIX + SIGNATURE_SUFFIX):
        artifact, role = name.removesuffix(MANIFEST_SUFFIX + SIGNATURE_SUFFIX), Role.SIGNATURE
    elif name.endswith(MANIFEST_SUFFIX):
        artifact, role = name.removesuffix(MANIFEST_SUFFIX), Role.MANIFEST
    match = _ARTIFACT.match(artifact)
    if match is None:
        return None
    try:
        created_at = datetime.strptime(match["stamp"], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # e.g. month 13: not written by us
        return None
    return BackupName(artifact, role, created_at, match["run"], match["ext"])


def created_at_of(name: str) -> datetime | None:
    """The UTC time in a backup's name, or None when the name is not one of ours."""
    parsed = parse_name(name)
    return parsed.created_at if parsed else None


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


def group_backups(
    objects: Iterable[StoredObject], location_of: Callable[[str], str]
) -> list[StoredBackup]:
    """Artifact, manifest and signature objects grouped into backups (newest first).

    Names that are not ours (or `*.partial`, a write in flight) are ignored: retention only ever
    touches what this tool stored. `location_of(artifact key)` is the backend's location.
    """
    groups: dict[str, tuple[datetime, dict[Role, StoredObject]]] = {}
    for obj in objects:
        parsed = parse_name(obj.name)
        if parsed is None:
            continue
        artifact_key = obj.key[: len(obj.key) - len(obj.name)] + parsed.artifact
        groups.setdefault(artifact_key, (parsed.created_at, {}))[1][parsed.role] = obj
    backups = [
        StoredBackup(
            location=location_of(artifact_key),
            created_at=created_at,
            size_bytes=roles[Role.ARTIFACT].size_bytes if Role.ARTIFACT in roles else 0,
            keys=tuple(roles[r].key for r in DELETION_ORDER if r in roles),
            has_manifest=Role.ARTIFACT in roles and Role.MANIFEST in roles,
        )
        for artifact_key, (created_at, roles) in groups.items()
    ]
    return sorted(backups, key=newest_first)


def newest_first(backup: StoredBackup) -> tuple[float, str]:
    # The location breaks ties of backups started in the same second (run ids differ).
    return (-as_utc(backup.created_at).timestamp(), backup.location)


def as_utc(moment: datetime) -> datetime:
    """Aware datetimes in UTC; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
