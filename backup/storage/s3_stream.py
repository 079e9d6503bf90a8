"""Upload while dumping: S3 multipart parts of an artifact sent while the dump still writes it.

SPOOL_MODE=spool (the default): the artifact grows in the spool file as before; each part is
hashed from the bytes as they are written (backup.storage.s3_sinks) and, once complete, read
back from the file by position and sent in the background, at most PARTS_WHILE_DUMPING at a
time, so memory stays bounded whatever the artifact's size. SPOOL_MODE=stream: there is no
spool file; parts are cut in memory (at most STREAM_PARTS_IN_FLIGHT sent at once plus the one
filling) and a failed part fails the dump, which a retry redoes.

Either way the upload journal in the run's spool directory (upload-state.json) records the
multipart upload and every finished part (number, size, ETag, MD5, SHA-256), so the store step
only lists the parts, compares them with the journal, completes the upload and writes the
manifest: the object becomes visible only after the verify step (and a test restore) passed.
An artifact of at most one part is never sent early: it keeps the single PutObject.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

from backup.errors import ArtifactCorrupted, BackupError, BackupTooLarge
from backup.files import atomic_file
from backup.manifest import Manifest
from backup.storage.s3 import S3Storage
from backup.storage.s3_loop import background_loop, run_in_background
from backup.storage.s3_multipart import (
    MIN_PART_SIZE,
    PartHashes,
    SentPart,
    _Upload,
    part_size_for,
)
from backup.storage.s3_sinks import WAIT_SECONDS, MemoryParts, SpoolParts

# Parts in flight while the dump runs, whatever S3_CONCURRENCY says: the dump makes ~50 MB/s of
# artifact, which 2 keep up with; 4 beside pg_dump and zstd raised the peak RSS past 200 MB.
PARTS_WHILE_DUMPING = 2
ABORT_SECONDS = 30.0  # an abort after failure waits at most this for S3 (cleanup retries)

logger = logging.getLogger("export_backup.storage")


def read_journal(path: Path) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def abort_journaled(
    storage: S3Storage, journal: Path, loop: asyncio.AbstractEventLoop | None = None
) -> bool:
    """Abort the multipart upload a previous dump attempt began (its parts belong to a dump
    that is redone now); True when there was one. Best effort: the run's cleanup aborts
    whatever is left under its key."""
    state = read_journal(journal)
    if not state or "upload_id" not in state:
        return False
    try:
        run_in_background(
            _abort(storage, str(state["key"]), str(state["upload_id"])), ABORT_SECONDS, loop
        )
    except (BackupError, TimeoutError) as err:
        logger.warning("could not abort the earlier upload of %s: %s", state["key"], err)
    journal.unlink(missing_ok=True)
    return True


async def _abort(storage: S3Storage, key: str, upload_id: str) -> None:
    async with storage._client() as s3:
        await storage._abort(s3, key, upload_id)


def verify_streamed(journal: Path, manifest: Manifest, max_bytes: int) -> bool:
    """For SPOOL_MODE=stream, where no spool file is left to hash: the journal's parts must be
    1..n without a gap and add up to the manifest's size and SHA-256 (computed over exactly the
    bytes cut into those parts; S3 checked each part's MD5 and SHA-256 on arrival). False when
    the artifact is spooled after all (it fitted in one part)."""
    state = read_journal(journal)
    if not state or not state.get("streamed"):
        return False
    if manifest.size_bytes > max_bytes:
        raise BackupTooLarge(
            f"the backup is {manifest.size_bytes} bytes, more than BACKUP_MAX_BYTES "
            f"({max_bytes}); raise BACKUP_MAX_BYTES or compress the backup"
        )
    parts = {int(n): p for n, p in state.get("parts", {}).items()}
    total = sum(int(p["size"]) for p in parts.values())
    if (
        sorted(parts) != list(range(1, len(parts) + 1))
        or total != manifest.size_bytes
        or state.get("sha256") != manifest.sha256
    ):
        raise ArtifactCorrupted(
            f"the streamed parts of {manifest.artifact} ({len(parts)} parts, {total} bytes) do "
            f"not add up to the dump ({manifest.size_bytes} bytes); the dump is redone"
        )
    return True


class PartStreamer:
    """Sends the parts of one artifact while the dump writes it; see the module docstring.

    Called from the dump's thread; the parts go out on `loop` (never that thread's own: the
    dump waits for them) or the background loop. `tick` is called
    while waiting (heartbeat and cancellation check: it may raise)."""

    def __init__(
        self,
        storage: S3Storage,
        key_stem: str,
        max_bytes: int,
        journal: Path,
        *,
        in_memory: bool = False,
        tick: Callable[[], None] = lambda: None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.storage = storage
        self._loop = loop or background_loop()
        self._folder = PurePosixPath(key_stem).parent
        self.key = ""
        # Sized for the largest artifact the cap lets through: never more than 10,000 parts.
        minimum = MIN_PART_SIZE if in_memory else storage.part_size
        self.part_size = part_size_for(max_bytes, minimum)
        self.journal = journal
        self.in_memory = in_memory
        self._tick = tick
        self._next = 1  # the next part number to send
        self._futures: list[concurrent.futures.Future[None]] = []
        self._parts: dict[int, SentPart] = {}
        self._hashes: list[PartHashes] = []  # of the parts the spool file completed, in order
        self._state: dict[str, Any] | None = None
        self._creating: asyncio.Future[_Upload] | None = None
        self._limit: asyncio.Semaphore | None = None
        self._journal_lock = asyncio.Lock()
        # A cancelled checkpoint's thread may still be writing: abort() forgets the journal
        # under this lock, and no write lands after it.
        self._file_lock = threading.Lock()
        self._forgotten = False
        self.failed: BaseException | None = None

    @property
    def started(self) -> bool:
        return self._next > 1

    def output(self, target: Path) -> contextlib.AbstractContextManager[BinaryIO]:
        """What the pipeline writes the artifact into (instead of `atomic_file(target)`)."""
        self.key = self.storage._key(str(self._folder / target.name))
        return self._memory_output(target) if self.in_memory else self._spool_output(target)

    @contextlib.contextmanager
    def _spool_output(self, target: Path) -> Iterator[BinaryIO]:
        try:
            with atomic_file(target) as file:
                growing = SpoolParts(file, self)
                yield cast(BinaryIO, growing)
                file.flush()  # before the rename: the parts read the partial file by name
                growing.end_part()
                self._seal(file, growing.size)
        except BaseException:
            self.abort()  # the size cap, a failed dump, cancellation: no upload lingers
            raise

    @contextlib.contextmanager
    def _memory_output(self, target: Path) -> Iterator[BinaryIO]:
        parts = MemoryParts(self)
        try:
            yield cast(BinaryIO, parts)
            if self.started:
                self.send(parts.rest)  # the last part (never empty)
                try:
                    self.wait()
                except _PartFailed as failed:
                    raise failed.__cause__ or failed from None  # the dump is redone
            else:  # at most one part: spooled as in SPOOL_MODE=spool, one PutObject later
                with atomic_file(target) as file:
                    file.write(parts.rest)
        except BaseException:
            self.abort()
            raise

    def grown(self, path: Path, size: int) -> None:
        """`size` bytes of the spool file are written and flushed: send the parts they fill."""
        while not self.failed and size > self.part_size and self._next * self.part_size <= size:
            self._schedule(path)

    def hashed(self, part: PartHashes) -> None:
        """The hashes of the next part the spool file completed (SpoolParts)."""
        self._hashes.append(part)

    def _seal(self, file: BinaryIO, size: int) -> None:
        """The file is whole: send what is left, then wait for every part. A part that failed
        only costs the head start: the upload step sends the artifact from the spool as before."""
        path = Path(file.name)
        self.grown(path, size)
        if self.started:
            while (self._next - 1) * self.part_size < size and not self.failed:
                self._schedule(path)  # the last part: the rest of the file
            # Durable while the last parts go up, not after: atomic_file's fsync then finds
            # little left to write (it took 0.2 s after the last part at 1 GB).
            os.fsync(file.fileno())
        try:
            self.wait()
        except _PartFailed as failed:
            logger.warning(
                "parts sent while dumping failed (%s); the upload step sends %s from the spool",
                failed.__cause__,
                self.key,
            )
            self.abort()

    def send(self, data: memoryview, done: Callable[[], None] = lambda: None) -> None:
        """SPOOL_MODE=stream: send one part from memory (`done` once its buffer is free again);
        a part that failed stops the dump at once."""
        self._raise_failure()
        self._schedule(data).add_done_callback(lambda _: done())

    def _raise_failure(self) -> None:
        if self.failed:
            raise self.failed

    def _schedule(self, source: Path | memoryview) -> concurrent.futures.Future[None]:
        number, self._next = self._next, self._next + 1
        known = self._hashes[number - 1] if len(self._hashes) >= number else None
        sending = self._send(number, source, known)
        future = asyncio.run_coroutine_threadsafe(sending, self._loop)
        self._futures.append(future)
        return future

    async def _send(self, number: int, source: Path | memoryview, known: PartHashes | None) -> None:
        try:
            async with self.storage._client() as s3:
                upload = await self._upload(s3)
                if self._limit is None:
                    self._limit = asyncio.Semaphore(
                        min(self.storage.concurrency, PARTS_WHILE_DUMPING)
                    )
                async with self._limit:
                    part = await self.storage._send_part(
                        s3, self.key, upload, number, source, known
                    )
            self._parts[number] = part
            await self._checkpoint()
        except BaseException as err:
            self.failed = self.failed or err
            raise

    async def _upload(self, s3: Any) -> _Upload:
        if self._creating is None:
            self._creating = asyncio.ensure_future(self._create(s3))
        return await asyncio.shield(self._creating)

    async def _create(self, s3: Any) -> _Upload:
        # No sha256 metadata: the hash is known only at the end; the manifest carries it.
        upload = await self.storage._create_upload(s3, self.key, {})
        upload.part_size = self.part_size
        self._state = {
            "key": self.key,
            "upload_id": upload.upload_id,
            "part_size": self.part_size,
            "etag_is_md5": upload.etag_is_md5,
            "streamed": self.in_memory,
            "parts": {},
        }
        await self._checkpoint()
        return upload

    async def _checkpoint(self) -> None:
        """One journal write at a time, off the event loop (it fsyncs), the newest state last."""
        async with self._journal_lock:
            if self._state is None:
                return
            self._state["parts"] = {str(n): p.journal() for n, p in sorted(self._parts.items())}
            await asyncio.to_thread(self._write_journal, json.dumps(self._state).encode())

    def _write_journal(self, raw: bytes) -> None:
        with self._file_lock:
            if not self._forgotten:
                _write(self.journal, raw)

    def wait(self) -> None:
        """Until every part is sent; a failed part raises _PartFailed (its cause the error)."""
        for future in self._futures:
            while True:
                try:
                    future.result(WAIT_SECONDS)
                    break
                except concurrent.futures.TimeoutError:
                    self._tick()
                except BaseException as err:
                    raise _PartFailed() from err

    def finish(self, size: int, sha256: str) -> None:
        """The dump is done and its manifest written: note what the parts add up to."""
        if self._state is not None and not self.failed:
            self._state.update(size=size, sha256=sha256)
            run_in_background(self._checkpoint(), loop=self._loop)

    def abort(self) -> None:
        """Stop sending, abort the multipart upload and forget it (best effort: the run's
        cleanup aborts whatever is left under its key)."""
        for future in self._futures:
            future.cancel()
        concurrent.futures.wait(self._futures, timeout=ABORT_SECONDS)
        try:
            run_in_background(self._abort_upload(), ABORT_SECONDS, self._loop)
        except (BackupError, TimeoutError) as err:
            logger.warning("could not abort the upload of %s: %s", self.key, err)
        self._state = None
        with self._file_lock:
            self._forgotten = True
            self.journal.unlink(missing_ok=True)

    async def _abort_upload(self) -> None:
        if self._creating is None:
            return
        try:  # a CreateMultipartUpload still on its way is waited for, then aborted
            upload = await self._creating
        except BaseException:
            return  # never created
        await _abort(self.storage, self.key, upload.upload_id)


def _write(path: Path, raw: bytes) -> None:
    with atomic_file(path) as file:
        file.write(raw)


class _PartFailed(Exception):
    pass
