"""Retention: the pure plan (fixed calendars and properties over random ones), the settings that
configure it, and retention applied to real backends (a directory, SeaweedFS S3, the Telegram
stand-in that enforces the 48-hour delete window)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from temporalio.testing import ActivityEnvironment

from activities.retention import RetentionActivities
from backup.download import download
from backup.errors import ConfigurationError, StorageError
from backup.layout import StoredBackup
from backup.prune import apply_retention
from backup.retention import RetentionPolicy, plan_retention
from backup.settings import Settings
from backup.signing import generate_keypair
from backup.storage import Storage, Transfer, open_storage
from devstack.seaweed import SeaweedS3
from emulators.telegram import DELETE_WINDOW_SECONDS, FakeTelegramAPI
from tests.backends import CHAT, TOKEN, artifact, local_backend, s3_backend, telegram_backend

# The policy, on fixed timestamps


def backup(when: str, name: str | None = None, *, has_manifest: bool = True) -> StoredBackup:
    moment = datetime.fromisoformat(when)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return StoredBackup(
        location=name or when,
        created_at=moment,
        size_bytes=1,
        keys=(name or when,),
        has_manifest=has_manifest,
    )


# A hand-built calendar, newest first, with ISO weeks and months across a year boundary.
CALENDAR = {
    "A": "2026-03-02T22:00",  # Mon, 2026-W10, March
    "B": "2026-03-02T09:00",  # same day, week and month as A, older
    "C": "2026-03-01T12:00",  # Sun, 2026-W09, March
    "D": "2026-02-28T12:00",  # Sat, 2026-W09, February
    "E": "2026-02-20T12:00",  # 2026-W08
    "F": "2026-01-15T12:00",  # 2026-W03, January
    "G": "2026-01-01T08:00",  # 2026-W01, January
    "H": "2025-12-29T08:00",  # Monday of 2026-W01 (ISO), but December 2025
    "I": "2025-12-28T08:00",  # 2025-W52, December
    "J": "2025-11-30T08:00",  # 2025-W48, November
}


def calendar() -> list[StoredBackup]:
    items = [backup(when, name) for name, when in CALENDAR.items()]
    return items[::-1]  # the plan must not depend on the order it is given


def kept(policy: RetentionPolicy, backups: list[StoredBackup] | None = None) -> set[str]:
    chosen = calendar() if backups is None else backups
    return {b.location for b in plan_retention(chosen, policy).keep}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RetentionPolicy(keep_last=3), "ABC"),
        (RetentionPolicy(keep_daily=3), "ACD"),
        (RetentionPolicy(keep_weekly=4), "ACEF"),
        # 2026-W01 holds G and H: one slot, G is its newest; then 2025-W52.
        (RetentionPolicy(keep_weekly=6), "ACEFGI"),
        (RetentionPolicy(keep_monthly=4), "ADFH"),
        (RetentionPolicy(keep_daily=3, keep_weekly=4, keep_monthly=4), "ACDEFH"),
        (RetentionPolicy(keep_last=1, keep_monthly=100), "ADFHJ"),
        (RetentionPolicy(keep_last=1, min_keep=4), "ABCD"),
        (RetentionPolicy(keep_last=100), "ABCDEFGHIJ"),
    ],
)
def test_the_right_set_is_kept_for_a_hand_built_calendar(
    policy: RetentionPolicy, expected: str
) -> None:
    plan = plan_retention(calendar(), policy)
    assert {b.location for b in plan.keep} == set(expected)
    assert {b.location for b in plan.prune} == set(CALENDAR) - set(expected)
    assert [b.location for b in plan.keep] == sorted(expected)  # newest first


def test_the_reasons_say_which_rule_kept_a_backup() -> None:
    plan = plan_retention(calendar(), RetentionPolicy(keep_last=1, keep_weekly=6))
    assert plan.reasons["A"] == ["newest 1 of min_keep 1", "last 1/1", "weekly 2026-W10"]
    assert plan.reasons["G"] == ["weekly 2026-W01"]
    assert "H" not in plan.reasons


def test_no_rule_prunes_nothing() -> None:
    plan = plan_retention(calendar(), RetentionPolicy(min_keep=1))
    assert plan.prune == [] and len(plan.keep) == len(CALENDAR)


def test_days_are_utc_days() -> None:
    """23:30 at UTC-2 on March 1st is March 2nd in UTC: the same day as the 09:00 UTC one."""
    west = timezone(timedelta(hours=-2))
    late = StoredBackup("late", datetime(2026, 3, 1, 23, 30, tzinfo=west), 1, ("late",))
    morning = backup("2026-03-02T09:00", "morning")
    earlier = backup("2026-03-01T20:00", "earlier")
    assert kept(RetentionPolicy(keep_daily=2), [morning, late, earlier]) == {"morning", "earlier"}


def test_orphans_never_count_and_are_never_pruned() -> None:
    """A failed or half-finished upload has no manifest: it can not push the last good backup
    out, and retention leaves it alone."""
    good = backup("2026-03-01T12:00", "good")
    older = backup("2026-02-01T12:00", "older")
    newer_orphans = [
        backup(f"2026-03-0{day}T12:00", f"orphan{day}", has_manifest=False) for day in (2, 3, 4)
    ]
    plan = plan_retention([*newer_orphans, good, older], RetentionPolicy(keep_last=1))
    assert [b.location for b in plan.keep] == ["good"]
    assert [b.location for b in plan.prune] == ["older"]
    assert [b.location for b in plan.orphans] == ["orphan4", "orphan3", "orphan2"]


def test_a_policy_refuses_zero_and_unknown_rules() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RetentionPolicy(keep_last=0)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RetentionPolicy(min_keep=0)
    with pytest.raises(ValueError, match="keep_dayly"):
        RetentionPolicy.model_validate({"keep_dayly": 3})


# The policy, as properties over random calendars

moments = st.datetimes(
    min_value=datetime(2024, 12, 20), max_value=datetime(2026, 1, 10), timezones=st.just(UTC)
)
rule = st.none() | st.integers(min_value=1, max_value=8)
policies = st.builds(
    RetentionPolicy,
    keep_last=rule,
    keep_daily=rule,
    keep_weekly=rule,
    keep_monthly=rule,
    min_keep=st.integers(min_value=1, max_value=5),
)
backup_lists = st.lists(st.tuples(moments, st.booleans()), max_size=40).map(
    lambda items: [
        StoredBackup(f"b{i}", moment, 1, (f"b{i}",), has_manifest=good)
        for i, (moment, good) in enumerate(items)
    ]
)


def newest_first(backups: list[StoredBackup]) -> list[StoredBackup]:
    return sorted(backups, key=lambda b: (-b.created_at.timestamp(), b.location))


def oracle(backups: list[StoredBackup], policy: RetentionPolicy) -> set[str]:
    """The rules written out the slow, obvious way."""
    good = newest_first([b for b in backups if b.has_manifest])
    if not policy.active:
        return {b.location for b in good}
    keep = {b.location for b in good[: max(policy.min_keep, policy.keep_last or 0)]}
    periods: list[tuple[int | None, Callable[[datetime], object]]] = [
        (policy.keep_daily, lambda m: m.date()),
        (policy.keep_weekly, lambda m: m.isocalendar()[:2]),
        (policy.keep_monthly, lambda m: (m.year, m.month)),
    ]
    for count, period in periods:
        if count is None:
            continue
        buckets = sorted({period(b.created_at) for b in good}, reverse=True)[:count]  # type: ignore[type-var]
        for bucket in buckets:
            keep.add(next(b.location for b in good if period(b.created_at) == bucket))
    return keep


@settings(max_examples=300, deadline=None)
@given(backup_lists, policies)
def test_plan_properties(backups: list[StoredBackup], policy: RetentionPolicy) -> None:
    plan = plan_retention(backups, policy)
    keep = [b.location for b in plan.keep]
    prune = [b.location for b in plan.prune]
    orphans = [b.location for b in plan.orphans]
    good = newest_first([b for b in backups if b.has_manifest])

    # kept, pruned and orphans partition the input; orphans are exactly those without manifest
    assert sorted(keep + prune + orphans) == sorted(b.location for b in backups)
    assert len(set(keep + prune + orphans)) == len(backups)
    assert set(orphans) == {b.location for b in backups if not b.has_manifest}
    # the newest good backup is never pruned, and the newest min_keep are all kept
    if good:
        assert good[0].location in keep
    assert {b.location for b in good[: policy.min_keep]} <= set(keep)
    # no rule: nothing pruned
    if not policy.active:
        assert prune == []
    # every kept backup has a reason; the set is the one the rules describe
    assert all(plan.reasons[location] for location in keep)
    assert set(keep) == oracle(backups, policy)


@settings(max_examples=200, deadline=None)
@given(backup_lists, policies, st.sampled_from(["keep_last", "keep_daily", "keep_weekly"]))
def test_a_larger_rule_never_keeps_less(
    backups: list[StoredBackup], policy: RetentionPolicy, name: str
) -> None:
    assume(policy.active)  # from no rule (keep all) to one rule keeps less, by design
    larger = policy.model_copy(update={name: (getattr(policy, name) or 0) + 3})
    assert kept(policy, backups) <= kept(larger, backups)


# Grouping listed objects into backups


# Settings


def test_settings_give_the_deployment_policy_and_project_overrides() -> None:
    config = Settings(
        retention_keep_last="7",
        retention_keep_monthly=12,
        retention_min_keep="2",
        retention_project_policies=json.dumps({"acme": {"keep_daily": 3}, "keepall": {}}),
    )
    assert config.retention_policy_for("other") == RetentionPolicy(
        keep_last=7, keep_monthly=12, min_keep=2
    )
    assert config.retention_policy_for("acme") == RetentionPolicy(keep_daily=3)
    assert not config.retention_policy_for("keepall").active
    assert not Settings().retention_policy_for("acme").active


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_KEEP_DAILY", "14")
    monkeypatch.setenv("RETENTION_KEEP_WEEKLY", "")
    monkeypatch.setenv("RETENTION_PROJECT_POLICIES", '{"acme": {"keep_last": 2}}')
    config = Settings()
    assert config.retention_policy_for("x") == RetentionPolicy(keep_daily=14)
    assert config.retention_policy_for("acme") == RetentionPolicy(keep_last=2)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"retention_keep_daily": "seven"}, "RETENTION_KEEP_DAILY='seven'"),
        ({"retention_keep_last": 0}, "RETENTION_KEEP_LAST=0"),
        ({"retention_min_keep": "0"}, "RETENTION_MIN_KEEP='0'"),
        ({"retention_project_policies": "{acme"}, "RETENTION_PROJECT_POLICIES is not valid JSON"),
        ({"retention_project_policies": "[]"}, "RETENTION_PROJECT_POLICIES must be a JSON object"),
        (
            {"retention_project_policies": '{"acme": {"keep_dayly": 3}}'},
            "RETENTION_PROJECT_POLICIES['acme'].keep_dayly",
        ),
        (
            {"retention_project_policies": '{"acme": {"keep_last": -1}}'},
            "RETENTION_PROJECT_POLICIES['acme'].keep_last",
        ),
    ],
)
def test_invalid_settings_name_the_variable(values: dict[str, object], named: str) -> None:
    config = Settings.model_validate(values)  # a bad value never stops the worker from starting
    with pytest.raises(ConfigurationError) as caught:
        config.retention_policy_for("acme")
    assert named in str(caught.value)


# Real backends


@pytest.fixture(scope="module")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    private, _ = generate_keypair()
    path = tmp_path_factory.mktemp("retention-signing") / "signing.pem"
    path.write_bytes(private)
    return path


STAMPS = ["20260301T120000Z", "20260302T120000Z", "20260303T120000Z", "20260304T120000Z"]


def key(stamp: str, project: str = "acme") -> str:
    return f"backups/{project}/{stamp}-{stamp[6:8]}abcdef.dump.zst"


async def store_backups(storage: Storage, tmp_path: Path) -> None:
    """Four signed backups of acme, an orphan (artifact only) newer than all of them, and a
    backup of `acme2`, whose keys share acme's prefix but not its folder."""
    for stamp in STAMPS:
        source, manifest = artifact(tmp_path, 1000 + int(stamp[6:8]))
        await storage.store(source, manifest, key(stamp), Transfer())
    source, manifest = artifact(tmp_path, 500)
    await storage.store(source, manifest, key("20260301T120000Z", "acme2"), Transfer())


def triple(k: str) -> set[str]:
    return {k, f"{k}.manifest.json", f"{k}.manifest.json.sig"}


@pytest.fixture(params=["local", "s3"])
def listing(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signing_key_file: Path,
) -> Iterator[tuple[Settings, Callable[[], set[str]], Callable[[str, bytes], None]]]:
    """Settings of a signing backend, a function listing every stored key, and one that writes
    a raw object (to plant an orphan)."""
    if request.param == "local":
        backend = local_backend(tmp_path)
        root = backend.settings.local_storage_dir

        def stored_local() -> set[str]:
            return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

        def put_local(k: str, body: bytes) -> None:
            (root / k).write_bytes(body)

        config = backend.settings.model_copy(update={"manifest_signing_key_file": signing_key_file})
        yield config, stored_local, put_local
        return
    seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
    backend = s3_backend(seaweed, monkeypatch)
    prefix = backend.settings.s3_prefix + "/"
    s3 = seaweed.client()

    def stored_s3() -> set[str]:
        keys: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=seaweed.bucket, Prefix=prefix
        ):
            keys |= {item["Key"].removeprefix(prefix) for item in page.get("Contents", [])}
        return keys

    def put_s3(k: str, body: bytes) -> None:
        s3.put_object(Bucket=seaweed.bucket, Key=prefix + k, Body=body)

    config = backend.settings.model_copy(update={"manifest_signing_key_file": signing_key_file})
    yield config, stored_s3, put_s3


async def test_keep_last_deletes_exactly_the_old_backups(
    listing: tuple[Settings, Callable[[], set[str]], Callable[[str, bytes], None]],
    tmp_path: Path,
) -> None:
    config, stored, put = listing
    storage = open_storage(config)
    await store_backups(storage, tmp_path)
    orphan = key("20260305T120000Z")
    put(orphan, os.urandom(100))  # an upload that never got its manifest
    before = stored()
    assert before == set().union(
        *(triple(key(s)) for s in STAMPS), triple(key(STAMPS[0], "acme2")), {orphan}
    )

    listed = await storage.list_backups("acme")
    assert [(b.created_at, b.has_manifest) for b in listed] == [
        (datetime(2026, 3, day, 12, tzinfo=UTC), day != 5) for day in (5, 4, 3, 2, 1)
    ]
    assert [b.size_bytes for b in listed] == [100, 1004, 1003, 1002, 1001]

    outcome = await apply_retention(storage, "acme", RetentionPolicy(keep_last=2))

    assert outcome.errors == [] and outcome.skipped_reason is None
    locations = {b.created_at.day: b.location for b in listed}
    assert outcome.kept == [locations[4], locations[3]]
    assert outcome.pruned == [locations[2], locations[1]]
    assert outcome.orphans == [locations[5]]
    gone = triple(key(STAMPS[0])) | triple(key(STAMPS[1]))
    assert stored() == before - gone
    for day in (3, 4):  # what is kept still downloads and verifies
        await download(locations[day], tmp_path / f"fetched{day}", config)

    # Again: nothing more to do. Deleting an already deleted backup is not an error.
    again = await apply_retention(storage, "acme", RetentionPolicy(keep_last=2))
    assert again.pruned == [] and again.errors == [] and stored() == before - gone
    await storage.delete_backup(next(b for b in listed if b.created_at.day == 1))


async def test_a_dry_run_deletes_nothing(
    listing: tuple[Settings, Callable[[], set[str]], Callable[[str, bytes], None]],
    tmp_path: Path,
) -> None:
    config, stored, _ = listing
    storage = open_storage(config)
    await store_backups(storage, tmp_path)
    before = stored()
    outcome = await apply_retention(storage, "acme", RetentionPolicy(keep_last=1), dry_run=True)
    assert len(outcome.pruned) == 3 and outcome.dry_run and stored() == before


async def test_no_rule_lists_and_deletes_nothing(tmp_path: Path) -> None:
    storage = open_storage(local_backend(tmp_path).settings)
    await store_backups(storage, tmp_path)
    outcome = await apply_retention(storage, "acme", RetentionPolicy())
    assert outcome.pruned == [] and "no retention rule" in (outcome.skipped_reason or "")


async def test_a_delete_failure_is_recorded_not_raised(tmp_path: Path) -> None:
    storage = open_storage(local_backend(tmp_path).settings)
    await store_backups(storage, tmp_path)

    async def refuse(backup: StoredBackup) -> None:
        raise StorageError("the store said no")

    storage.delete_backup = refuse  # type: ignore[method-assign]
    outcome = await apply_retention(storage, "acme", RetentionPolicy(keep_last=3))
    assert outcome.pruned == [] and len(outcome.errors) == 1
    assert "the store said no" in outcome.errors[0]


async def test_s3_listing_pages_through_many_objects(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More objects than one ListObjectsV2 page (1000) holds."""
    backend = s3_backend(seaweed, monkeypatch)
    prefix = backend.settings.s3_prefix + "/"
    s3 = seaweed.client()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(1100):
        moment = start + timedelta(minutes=n)
        name = key(f"{moment:%Y%m%dT%H%M%SZ}").replace("abcdef", f"{n:06d}")
        s3.put_object(Bucket=seaweed.bucket, Key=prefix + name, Body=b"x")
    listed = await backend.storage.list_backups("acme")
    assert len(listed) == 1100 and not any(b.has_manifest for b in listed)


# Telegram


@pytest.fixture
def telegram() -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI(TOKEN, {CHAT}, download_limit=1_000_000) as api:
        yield api


async def test_telegram_retention_is_not_applied_and_says_why(
    telegram: FakeTelegramAPI, tmp_path: Path
) -> None:
    storage = telegram_backend(telegram).storage
    source, manifest = artifact(tmp_path, 1000)
    for stamp in STAMPS:
        await storage.store(source, manifest, key(stamp), Transfer())
    outcome = await apply_retention(storage, "acme", RetentionPolicy(keep_last=1))
    assert outcome.pruned == [] and outcome.errors == [] and not telegram.deleted
    reason = outcome.skipped_reason or ""
    assert "Telegram cannot list" in reason and "48 hours" in reason
    assert "auto-delete timer" in reason and TOKEN not in reason


async def test_telegram_delete_works_within_48_hours_and_refuses_clearly_after(
    telegram: FakeTelegramAPI, tmp_path: Path
) -> None:
    storage = telegram_backend(telegram).storage
    source, manifest = artifact(tmp_path, 2_000_000)  # 3 parts and the manifest

    async def stored_backup(stamp: str) -> StoredBackup:
        known = set(telegram.documents)
        stored = await storage.store(source, manifest, key(stamp), Transfer())
        ids = tuple(str(m) for m in sorted(set(telegram.documents) - known))
        return StoredBackup(stored.location, datetime.now(UTC), 2_000_000, ids)

    fresh = await stored_backup(STAMPS[0])
    await storage.delete_backup(fresh)
    assert telegram.deleted == {int(m) for m in fresh.keys} and len(fresh.keys) == 4
    await storage.delete_backup(fresh)  # already gone: not an error

    old = await stored_backup(STAMPS[1])
    telegram.advance_clock(DELETE_WINDOW_SECONDS + 60)
    with pytest.raises(StorageError) as caught:
        await storage.delete_backup(old)
    assert not caught.value.retryable
    assert "48 hours" in str(caught.value) and TOKEN not in str(caught.value)


# The activity


async def test_the_activity_applies_the_configured_policy(tmp_path: Path) -> None:
    config = local_backend(tmp_path).settings.model_copy(
        update={"retention_project_policies": '{"acme": {"keep_last": 1}}'}
    )
    await store_backups(open_storage(config), tmp_path)
    outcome = await ActivityEnvironment().run(RetentionActivities(config).apply_retention, "acme")
    assert len(outcome.kept) == 1 and len(outcome.pruned) == 3 and outcome.errors == []
    assert len(await open_storage(config).list_backups("acme")) == 1


async def test_the_activity_reports_a_bad_setting_instead_of_failing(tmp_path: Path) -> None:
    config = local_backend(tmp_path).settings.model_copy(update={"retention_keep_daily": "-3"})
    await store_backups(open_storage(config), tmp_path)
    outcome = await ActivityEnvironment().run(RetentionActivities(config).apply_retention, "acme")
    assert outcome.pruned == [] and "RETENTION_KEEP_DAILY='-3'" in outcome.errors[0]
    assert outcome.skipped_reason and len(await open_storage(config).list_backups("acme")) == 4
