"""The storage layout: keys built for a run read back as that run's backup, and every key
already in a bucket (older forms included) still reads back, so existing backups stay listed
and pruned."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from backup import layout
from backup.layout import Role, StoredObject, created_at_of, group_backups, parse_name
from backup.models import PROJECT_ID_PATTERN, Compression, DumpFormat

RUN_ID = "0192f3a4-5b6c-7d8e-9f01-23456789abcd"


def test_the_key_stem_is_the_project_folder_the_utc_start_and_the_run() -> None:
    started = datetime(2026, 3, 1, 12, 30, 5, 999, tzinfo=UTC)
    assert layout.key_stem("acme", started, RUN_ID) == "backups/acme/20260301T123005Z-23456789abcd"
    # The stamp is UTC whatever zone the time comes in.
    plus_two = started.astimezone(timezone(timedelta(hours=2)))
    assert layout.key_stem("acme", plus_two, RUN_ID) == layout.key_stem("acme", started, RUN_ID)


def test_artifact_names_per_format_compression_and_encryption() -> None:
    name = layout.artifact_name
    assert name("s", DumpFormat.CUSTOM, Compression.ZSTD) == "s.dump.zst"
    assert name("s", DumpFormat.SQL, Compression.GZIP) == "s.sql.gz"
    assert name("s", DumpFormat.TAR, Compression.NONE) == "s.tar"
    assert name("s", DumpFormat.CUSTOM, Compression.ZSTD, encrypted=True) == "s.dump.zst.age"
    # pg_dump compresses a directory's files itself: the tar around them is plain.
    assert name("s", DumpFormat.DIRECTORY, Compression.ZSTD) == "s.dir.tar"
    assert name("s", DumpFormat.DIRECTORY, Compression.GZIP, encrypted=True) == "s.dir.tar.age"
    # Every format and compression has its extension (a new enum value must get one).
    for fmt in DumpFormat:
        for compression in Compression:
            assert parse_name(name("20260301T120000Z-abc", fmt, compression)) is not None


def test_the_artifact_key_sits_in_the_stem_folder() -> None:
    stem = "backups/acme/20260301T120000Z-23456789abcd"
    key = layout.artifact_key(stem, "20260301T120000Z-23456789abcd.dump.zst")
    assert key == "backups/acme/20260301T120000Z-23456789abcd.dump.zst"
    assert layout.manifest_name(key) == key + ".manifest.json"
    assert layout.signature_name(key) == key + ".manifest.json.sig"


def test_keys_already_in_buckets_still_parse() -> None:
    """Written by earlier releases (8-digit run ids) and by this one (12): all are ours."""
    old = "20251114T020000Z-1a2b3c4d.dump.zst"
    for name, role in (
        (old, Role.ARTIFACT),
        (old + ".manifest.json", Role.MANIFEST),
        (old + ".manifest.json.sig", Role.SIGNATURE),
    ):
        parsed = parse_name(name)
        assert parsed is not None
        assert (parsed.artifact, parsed.role, parsed.run) == (old, role, "1a2b3c4d")
        assert parsed.created_at == datetime(2025, 11, 14, 2, tzinfo=UTC)
    parsed = parse_name("20261126T120000Z-abcdef123456.dir.tar.age")
    assert parsed is not None and parsed.extension == ".dir.tar.age"
    for not_ours in ("notes.txt", old + ".partial", "20261301T120000Z-ffffffff.dump", "x.dump"):
        assert parse_name(not_ours) is None, not_ours


project_ids = st.from_regex(PROJECT_ID_PATTERN, fullmatch=True)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
)


@given(
    project=project_ids,
    started=moments,
    run=st.uuids().map(str),
    fmt=st.sampled_from(DumpFormat),
    compression=st.sampled_from(Compression),
    encrypted=st.booleans(),
)
def test_build_then_parse_round_trips(
    project: str,
    started: datetime,
    run: str,
    fmt: DumpFormat,
    compression: Compression,
    encrypted: bool,
) -> None:
    stem = layout.key_stem(project, started, run)
    assert stem.startswith(layout.project_prefix(project))
    name = layout.artifact_name(stem.rsplit("/", 1)[1], fmt, compression, encrypted=encrypted)
    key = layout.artifact_key(stem, name)
    assert key.rsplit("/", 1)[0] + "/" == layout.project_prefix(project)
    for stored, role in (
        (key, Role.ARTIFACT),
        (layout.manifest_name(key), Role.MANIFEST),
        (layout.signature_name(key), Role.SIGNATURE),
    ):
        parsed = parse_name(stored.rsplit("/", 1)[1])
        assert parsed is not None
        assert parsed.role is role and parsed.artifact == name
        assert parsed.created_at == started.replace(microsecond=0)
        assert parsed.run == layout.short_run_id(run)
    assert parse_name(name + layout.PARTIAL_SUFFIX) is None


def test_a_runs_stored_objects_group_into_one_backup() -> None:
    stem = layout.key_stem("acme", datetime(2026, 3, 1, 12, tzinfo=UTC), str(uuid.uuid4()))
    key = layout.artifact_key(stem, stem.rsplit("/", 1)[1] + ".sql.gz")
    keys = [key, layout.manifest_name(key), layout.signature_name(key)]
    objects = [StoredObject(k, k.rsplit("/", 1)[1], 7) for k in keys]
    [backup] = group_backups(objects, lambda k: "file:///" + k)
    assert backup.location == "file:///" + key and backup.has_manifest and backup.size_bytes == 7
    assert backup.keys == (layout.manifest_name(key), layout.signature_name(key), key)


def test_listed_objects_are_grouped_into_backups() -> None:
    folder = "backups/acme/"
    names = [
        "20260301T120000Z-aaaaaaaa.dump.zst.age",
        "20260301T120000Z-aaaaaaaa.dump.zst.age.manifest.json",
        "20260301T120000Z-aaaaaaaa.dump.zst.age.manifest.json.sig",
        "20260302T120000Z-bbbbbbbb.sql.gz",  # no manifest: an orphan
        "20260303T120000Z-cccccccc.dir.tar.zst.partial",  # a write in flight
        "20260228T120000Z-dddddddd.tar.manifest.json",  # a manifest whose artifact is gone
        "20260227T120000Z-eeeeeeee.dump",
        "20260227T120000Z-eeeeeeee.dump.manifest.json",
        "notes.txt",  # not ours
        "20261301T120000Z-ffffffff.dump",  # not a date: not ours
    ]
    objects = [StoredObject(folder + name, name, 10) for name in names]
    backups = group_backups(objects, lambda key: "s3://bucket/" + key)
    summary = [(b.location.rsplit("/", 1)[1], b.has_manifest, b.keys) for b in backups]
    a, b, d, e = (
        folder + n
        for n in (
            "20260301T120000Z-aaaaaaaa.dump.zst.age",
            "20260302T120000Z-bbbbbbbb.sql.gz",
            "20260228T120000Z-dddddddd.tar",
            "20260227T120000Z-eeeeeeee.dump",
        )
    )
    assert summary == [
        ("20260302T120000Z-bbbbbbbb.sql.gz", False, (b,)),
        (
            "20260301T120000Z-aaaaaaaa.dump.zst.age",
            True,
            (f"{a}.manifest.json", f"{a}.manifest.json.sig", a),
        ),
        ("20260228T120000Z-dddddddd.tar", False, (f"{d}.manifest.json",)),
        ("20260227T120000Z-eeeeeeee.dump", True, (f"{e}.manifest.json", e)),
    ]
    assert backups[1].created_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert created_at_of("20260301T120000Z-aaaaaaaa.dump.manifest.json.sig") is not None
