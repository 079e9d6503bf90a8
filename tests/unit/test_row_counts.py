"""The row counter (backup/row_counts.py) on real pg_dump 18 output captured from
tests/row_count_schema.py (tests/unit/data/, rewritten by `python -m tests.row_count_schema URL`):
counts equal count(*) of every table however the stream is cut, the bulk path and the
chunk-by-chunk loop agree, and what it can not read it leaves to count(*) instead of guessing."""

from __future__ import annotations

import gzip
import json
import random
import struct
from pathlib import Path

import pytest

from backup import row_counts
from backup.models import DumpFormat
from backup.row_counts import CustomArchiveCounter, StreamCounter
from backup.row_counts_sql import PlainSqlCounter
from tests.row_count_schema import SCHEMA

DATA = Path(__file__).parent / "data"
EXACT: dict[str, int] = json.loads((DATA / "rows.json").read_text())
# A partitioned table holds no rows itself: pg_dump writes no data for it, count(*) says 0.
PARTITIONED = {"parted"}
STREAMED = {table: rows for table, rows in EXACT.items() if table not in PARTITIONED}
CAPTURED = {DumpFormat.CUSTOM: "rows.dump.gz", DumpFormat.SQL: "rows.sql.gz"}


def captured(fmt: DumpFormat) -> bytes:
    return gzip.decompress((DATA / CAPTURED[fmt]).read_bytes())


def counted(fmt: DumpFormat, pieces: list[bytes], schema: str = SCHEMA) -> dict[str, int]:
    counter = row_counts.stream_counter(fmt, schema)
    assert counter is not None
    for piece in pieces:
        counter.feed(piece)
    return counter.counts()


def cut(data: bytes, seed: int, largest: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(data):
        size = rng.randint(1, largest)
        pieces.append(data[at : at + size])
        at += size
    return pieces


def test_the_captured_schema_has_what_makes_counting_hard() -> None:
    assert EXACT["many"] == 20000 and EXACT["empty"] == 0 and EXACT["no_columns"] == 7
    assert EXACT["parted"] == 0 and EXACT["parted_2024"] + EXACT["parted_2025"] == 400
    assert len(EXACT) > 120
    dump = captured(DumpFormat.CUSTOM)
    # Chunk lengths whose prefix holds a newline byte (10, 266, 2560..2815 bytes per row).
    assert b"\x00\x0a\x00\x00\x00" in dump and b"\x0a\x0a\x00\x00" in dump
    sql = captured(DumpFormat.SQL)
    # Lines that look like data but are a function body, a comment and a view.
    assert sql.count(f'COPY "{SCHEMA}".many (id, v) FROM stdin;\n'.encode()) == 2
    assert sql.count(f'COPY "{SCHEMA}".empty (id) FROM stdin;\n'.encode()) == 2


@pytest.mark.parametrize("fmt", list(CAPTURED))
def test_whole_stream_counts_equal_count_star(fmt: DumpFormat) -> None:
    assert counted(fmt, [captured(fmt)]) == STREAMED


@pytest.mark.parametrize("fmt", list(CAPTURED))
@pytest.mark.parametrize(("seed", "largest"), [(1, 7), (2, 300), (3, 5000), (4, 70000)])
def test_counts_do_not_depend_on_how_the_stream_is_cut(
    fmt: DumpFormat, seed: int, largest: int
) -> None:
    assert counted(fmt, cut(captured(fmt), seed, largest)) == STREAMED


def test_the_bulk_path_and_the_chunk_loop_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    dump = captured(DumpFormat.CUSTOM)
    pieces = cut(dump, 5, 1 << 20)
    monkeypatch.setattr(row_counts, "FAST_MIN", len(dump) + 1)  # the chunk loop only
    assert counted(DumpFormat.CUSTOM, pieces) == STREAMED
    monkeypatch.setattr(row_counts, "FAST_MIN", 1)
    monkeypatch.setattr(row_counts, "WINDOW", 97)  # the bulk path often, cut everywhere
    assert counted(DumpFormat.CUSTOM, pieces) == STREAMED


def test_another_schema_in_the_stream_is_not_counted() -> None:
    for fmt in CAPTURED:
        assert counted(fmt, [captured(fmt)], schema="row counts") == {}


def test_formats_the_worker_does_not_see_whole_have_no_counter() -> None:
    assert row_counts.stream_counter(DumpFormat.TAR, SCHEMA) is None
    assert row_counts.stream_counter(DumpFormat.DIRECTORY, SCHEMA) is None


def block(dump_id: int, chunks: list[bytes]) -> bytes:
    out = b"\x01" + struct.pack("<BI", 0, dump_id)
    for chunk in chunks:
        out += struct.pack("<BI", 0, len(chunk)) + chunk
    return out + struct.pack("<BI", 0, 0)


def toc(dump: bytes) -> tuple[int, dict[str, int]]:
    """Where the archive's data starts, and the dumpId of each TABLE DATA entry."""
    counter = CustomArchiveCounter(SCHEMA)
    counter._buf = bytearray(dump)
    data_starts = counter._read_head_and_toc()
    return data_starts, {table: dump_id for dump_id, table in counter._tables.items()}


def test_a_block_without_its_terminator_or_seen_twice_is_left_to_count_star() -> None:
    dump = captured(DumpFormat.CUSTOM)
    data_starts, ids = toc(dump)
    terminated = [b"1\tx\n", b"2\ty\n", b"\\.\n\n\n"]
    archive = dump[:data_starts] + block(ids["many"], terminated) + block(ids["fives"], [b"1\n"])
    assert counted(DumpFormat.CUSTOM, [archive]) == {"many": 2}
    twice = archive + block(ids["many"], terminated)
    assert counted(DumpFormat.CUSTOM, [twice]) == {}
    assert counted(DumpFormat.CUSTOM, [dump + block(ids["many"], terminated)]) == {
        table: rows for table, rows in STREAMED.items() if table != "many"
    }


def test_a_truncated_stream_counts_only_the_tables_read_whole() -> None:
    for fmt in CAPTURED:
        data = captured(fmt)
        half = counted(fmt, [data[: len(data) // 2]])
        assert half and len(half) < len(STREAMED)
        assert all(STREAMED[table] == rows for table, rows in half.items())


@pytest.mark.parametrize(
    "stream",
    [
        b"",
        b"not an archive at all\n",
        b"PGDMP\x01\x10\x00\x04\x08\x01\x01",  # compressed (gzip): the data is not COPY text
        b"PGDMP\x01\x10\x00\x04\x08\x03\x00",  # the tar format's header
        b"PGDMP\x01\x0b\x00\x04\x08\x01",  # archive 1.11: older than this parser reads
    ],
)
def test_what_it_can_not_read_counts_nothing(stream: bytes) -> None:
    counter: StreamCounter = CustomArchiveCounter(SCHEMA)
    counter.feed(stream + b"\x00" * 4096)
    counter.feed(captured(DumpFormat.CUSTOM))
    assert counter.counts() == {}


def test_a_plain_dump_cut_inside_a_quote_or_a_data_line_resumes_exactly() -> None:
    sql = captured(DumpFormat.SQL)
    marks = sorted([sql.index(b"$_$"), sql.index(b"it''s"), sql.index(b"\n1\t") + 2])
    pieces, at = [], 0
    for mark in marks:
        pieces.append(sql[at:mark])
        at = mark
    pieces.append(sql[at:])
    counter = PlainSqlCounter(SCHEMA)
    for piece in pieces:
        counter.feed(piece)
    assert counter.counts() == STREAMED


def downgraded(dump: bytes, minor: int) -> bytes:
    """The captured archive (1.16) re-encoded as archive 1.`minor`, as older pg_dumps write it
    (1.12: PostgreSQL 9.0, 1.13: 11, 1.14: 12 to 15, 1.15: 16, 1.16: 17 and 18): below 1.16 TOC
    entries have no relkind, below 1.15 the header holds the compression level as an int where
    1.15 has the algorithm as a byte, below 1.14 entries have no table access method
    (pg_backup_archiver.c WriteHead, WriteToc)."""
    assert dump[5:7] == b"\x01\x10"
    pos = 12

    def raw_int() -> bytes:
        nonlocal pos
        pos += 5
        return dump[pos - 5 : pos]

    def raw_str() -> bytes:
        length = struct.unpack("<BI", raw_int())
        nonlocal pos
        size = 0 if length[0] else length[1]  # a negative length: NULL, no bytes
        pos += size
        return dump[pos - 5 - size : pos]

    out = dump[:6] + bytes([minor]) + dump[7:11]
    out += dump[11:12] if minor >= 15 else struct.pack("<BI", 0, dump[11])
    out += b"".join(raw_int() for _ in range(7)) + b"".join(raw_str() for _ in range(3))
    entries = raw_int()
    out += entries
    for _ in range(struct.unpack("<BI", entries)[1]):
        out += raw_int() + raw_int() + b"".join(raw_str() for _ in range(4)) + raw_int()
        strings = [raw_str() for _ in range(6)]  # defn, drop, copy, namespace, tablespace, am
        out += b"".join(strings if minor >= 14 else strings[:5])
        relkind = raw_int()
        out += (relkind if minor >= 16 else b"") + raw_str() + raw_str()
        while (dependency := raw_str()) != struct.pack("<BI", 1, 1):
            out += dependency
        out += dependency + dump[pos : pos + 9]
        pos += 9
    return out + dump[pos:]


@pytest.mark.parametrize("minor", [12, 13, 14, 15, 16])
def test_archive_versions_from_pg_dump_9_0_to_18(minor: int) -> None:
    dump = captured(DumpFormat.CUSTOM)
    archive = downgraded(dump, minor)
    assert archive[6] == minor
    # Faithful: 1.16 comes back byte for byte; older ones lose a relkind per entry (and 1.14
    # has the 4 more bytes of an int for the compression byte, 1.13 and 1.12 no access method).
    if minor >= 14:
        assert (len(dump) - len(archive)) % 5 == (1 if minor == 14 else 0)
    assert (archive == dump) is (minor == 16)
    assert counted(DumpFormat.CUSTOM, cut(archive, minor, 4000)) == STREAMED
