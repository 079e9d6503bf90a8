"""The local directory store takes the spool's artifact by a hard link where it can, and by a
copy where it can not (another file system) or must not (a file outside the spool, which its
owner may write again), with the same result either way."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from backup.layout import PARTIAL_SUFFIX
from backup.storage import Transfer
from backup.storage.local import LocalStorage
from tests.backends import KEY, artifact

SHM = Path("/dev/shm")


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]


async def test_same_file_system_links_instead_of_copying(tmp_path: Path) -> None:
    source, manifest = artifact(tmp_path, 3 * 1024 * 1024)
    done: list[int] = []
    storage = LocalStorage(tmp_path / "store", spool_dir=tmp_path)

    stored = await storage.store(source, manifest, KEY, Transfer(on_progress=done.append))

    target = tmp_path / "store" / KEY
    assert stored.location == target.as_uri()
    assert os.path.samefile(source, target)  # one inode: nothing was copied
    assert done == [manifest.size_bytes]
    source.unlink()  # as the store step removes the spool: the stored backup stays whole
    assert target.stat().st_size == manifest.size_bytes
    assert not leftovers(tmp_path / "store")


async def test_storing_again_after_a_crash_keeps_one_file_and_no_partial(tmp_path: Path) -> None:
    source, manifest = artifact(tmp_path, 1024 * 1024)
    storage = LocalStorage(tmp_path / "store", spool_dir=tmp_path)
    await storage.store(source, manifest, KEY, Transfer())
    # A retried store step finds its own earlier link in place (renaming a link over another
    # link of the same file is a no-op that would leave the partial name behind).
    await storage.store(source, manifest, KEY, Transfer())

    target = tmp_path / "store" / KEY
    assert os.path.samefile(source, target)
    assert not leftovers(tmp_path / "store")


@pytest.mark.skipif(
    not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(Path.cwd()).st_dev,
    reason="needs /dev/shm on a file system of its own",
)
async def test_another_file_system_is_copied(tmp_path: Path) -> None:
    source, manifest = artifact(tmp_path, 2 * 1024 * 1024)
    root = SHM / f"export-backup-test-{uuid.uuid4().hex}"
    try:
        storage = LocalStorage(root, spool_dir=tmp_path)
        await storage.store(source, manifest, KEY, Transfer())
        target = root / KEY
        assert not os.path.samefile(source, target)
        assert target.read_bytes() == source.read_bytes()
        assert not leftovers(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_a_file_outside_the_spool_is_copied_and_its_later_writes_stay_out(
    tmp_path: Path,
) -> None:
    spool, elsewhere = tmp_path / "spool", tmp_path / "elsewhere"
    spool.mkdir()
    elsewhere.mkdir()
    source, manifest = artifact(elsewhere, 1024 * 1024)
    kept = source.read_bytes()
    storage = LocalStorage(tmp_path / "store", spool_dir=spool)
    await storage.store(source, manifest, KEY, Transfer())

    target = tmp_path / "store" / KEY
    assert not os.path.samefile(source, target)
    source.write_bytes(b"rewritten in place by its owner")  # the same inode, truncated
    assert target.read_bytes() == kept
