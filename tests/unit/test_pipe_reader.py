"""pg_dump's pipe read in batches (backup.pipe_reader): every byte in order, tiny outputs read
as they come without a nap, large ones in batches once past the first MiB."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading

import pytest

from backup import pipe_reader
from backup.pipe_reader import EAGER_UNTIL, PIPE_SIZE, BatchedPipe

CHUNK = 1024 * 1024


def writer(data: bytes, piece: int) -> subprocess.Popen[bytes]:
    """A child writing `data` to its stdout `piece` bytes at a time, as pg_dump's stdio does."""
    code = (
        "import os, sys; data = sys.stdin.buffer.read()\n"
        f"for i in range(0, len(data), {piece}): os.write(1, data[i : i + {piece}])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    stdin = proc.stdin
    assert stdin is not None

    def feed() -> None:
        with stdin:
            stdin.write(data)

    threading.Thread(target=feed).start()
    return proc


def read_all(proc: subprocess.Popen[bytes]) -> list[bytes]:
    assert proc.stdout is not None
    pipe = BatchedPipe(proc.stdout, CHUNK)
    chunks = []
    while chunk := pipe.read():
        chunks.append(chunk)
    assert proc.wait() == 0
    return chunks


def test_a_tiny_output_is_read_without_a_nap(monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []
    monkeypatch.setattr(pipe_reader.time, "sleep", naps.append)
    data = os.urandom(200_000)
    assert b"".join(read_all(writer(data, 4096))) == data
    assert naps == []


def test_a_large_output_arrives_whole_in_order_and_in_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    naps: list[float] = []
    sleep = pipe_reader.time.sleep

    def nap(seconds: float) -> None:
        naps.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(pipe_reader.time, "sleep", nap)
    data = os.urandom(24 * CHUNK)
    chunks = read_all(writer(data, 4096))
    assert b"".join(chunks) == data
    assert all(len(c) <= CHUNK for c in chunks)
    assert naps, "past the first MiB the reader waits for batches"
    # Past the eager first MiB, reads are batches, not the writer's 4 KiB writes.
    done, batched = 0, []
    for chunk in chunks:
        if done >= EAGER_UNTIL:
            batched.append(len(chunk))
        done += len(chunk)
    assert sum(batched) / len(batched) > 16 * 4096


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="Linux pipes only")
def test_the_pipe_is_enlarged() -> None:
    read, write = os.pipe()
    try:
        with os.fdopen(read, "rb", closefd=False) as pipe:
            BatchedPipe(pipe, CHUNK)
        assert fcntl.fcntl(read, fcntl.F_GETPIPE_SZ) == PIPE_SIZE
    finally:
        os.close(read)
        os.close(write)
