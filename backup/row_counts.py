"""Exact row counts read from pg_dump's own output as it streams through the worker.

The manifest's row counts are the test-restore contract, so they must be exact and of the dump's
snapshot. Counting the COPY data the dump itself carries is both by construction, and takes no
second scan of every heap on the database server (count(*) per table, beside the dump); the
price is worker CPU, a few hundred nanoseconds per row (docs/performance.md).

COPY text escapes newlines inside values, so each row is exactly one b"\\n", and pg_dump ends
each table's data with the terminator b"\\.\\n\\n\\n" (three newlines more, not rows).

- Custom format (pg_backup_custom.c, pg_backup_archiver.c, archive versions 1.12 to 1.16): header,
  TOC (dumpId → namespace, tag, desc), then data blocks: a block type byte, the dumpId, chunks each
  prefixed by its length (an archive int: sign byte, then intSize bytes little-endian), a zero
  length closing the block. pg_dump -Z0 writes one chunk per row, plus one for the terminator.
- Plain format (backup/row_counts_sql.py): the lines between `COPY ... FROM stdin;` and `\\.`.

Anything else (a compressed or unknown archive, a version not listed, a table seen twice or not at
all, or without its terminator) is left uncounted: `counts` holds only tables read whole, and the
caller counts the rest with count(*) in the same snapshot. Never a guess.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Protocol

from backup.models import DumpFormat

TERMINATOR = b"\\.\n\n\n"
TERMINATOR_NEWLINES = 3
BLK_DATA = 1
BLK_BLOBS = 3
READABLE_VERSIONS = range(12, 17)  # archive format 1.12 (PostgreSQL 9.0) to 1.16 (17, 18)
FORMAT_CUSTOM = 1
# Beyond this much buffered header, TOC or SQL text the stream is not what we expect: give up.
MAX_BUFFERED = 64 * 1024 * 1024
# The bulk path splits at most WINDOW bytes at a time (a miss wastes at most that), only where
# FAST_MIN bytes are buffered and the next row is short (else the chunk loop is as quick), and
# backs off up to BACKOFF chunks when it keeps missing.
WINDOW = 64 * 1024
FAST_MIN = 1024
BACKOFF = 4096
BULK_ROW = 512  # longer rows: counting their bytes dominates, and the loop copies nothing


class StreamCounter(Protocol):
    def feed(self, data: bytes) -> None:
        """The next bytes of pg_dump's stdout, in order."""

    def counts(self) -> dict[str, int]:
        """Rows of each table of the schema whose data was read whole, exactly once."""


def stream_counter(fmt: DumpFormat, schema: str) -> StreamCounter | None:
    """A counter for the formats pg_dump streams to the worker; None for the others."""
    if fmt is DumpFormat.CUSTOM:
        return CustomArchiveCounter(schema)
    if fmt is DumpFormat.SQL:
        from backup.row_counts_sql import PlainSqlCounter

        return PlainSqlCounter(schema)
    return None


class _NeedMore(Exception):
    """The buffer ends inside the item being read."""


class Unreadable(Exception):
    """The stream is not an archive this parser reads: count nothing more from it."""


class Tally:
    """Per-table newline counts, a table counted only if its data was seen exactly once."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.doubtful: set[str] = set()

    def record(self, table: str, rows: int | None) -> None:
        if rows is None or table in self.rows or table in self.doubtful:
            self.rows.pop(table, None)
            self.doubtful.add(table)
        else:
            self.rows[table] = rows


class Buffered:
    """What the counters share: the buffer keeps what an item cut by a read needs, and an item
    that did not fit is tried again only once the buffer has doubled (a large TOC or function
    body fed in small reads is parsed a few times, not once per read)."""

    START = 0  # where the unread part starts in the buffer (bytes before it kept as context)

    def __init__(self) -> None:
        self._buf = bytearray()
        self._retry_at = 0
        self._unreadable = False
        self._tally = Tally()

    def feed(self, data: bytes) -> None:
        if self._unreadable:
            return
        self._buf += data
        if len(self._buf) >= self._retry_at:
            self._consume()

    def counts(self) -> dict[str, int]:
        if not self._unreadable:
            self._consume()
        return dict(self._tally.rows)

    def _consume(self) -> None:
        try:
            pos = self._parse(self.START)
        except Exception:  # Unreadable, or a surprise: the tables left are counted by count(*)
            self._unreadable, self._buf = True, bytearray()
            return
        self._retry_at = 2 * len(self._buf) if pos == self.START else 0
        del self._buf[: pos - self.START]
        if len(self._buf) > MAX_BUFFERED:
            self._unreadable, self._buf = True, bytearray()

    def _parse(self, pos: int) -> int:
        """Consume what is whole in the buffer from `pos`; return where the unread part starts."""
        raise NotImplementedError


class CustomArchiveCounter(Buffered):
    """Parses a `pg_dump -Fc -Z0` stream incrementally, counting newlines per TABLE DATA block."""

    def __init__(self, schema: str) -> None:
        super().__init__()
        self._schema = schema
        self._state = "head"
        self._int_size = 4
        self._tables: dict[int, str] = {}  # dumpId → table, for this schema's TABLE DATA
        self._table: str | None = None  # the block being read, None for another entry's
        self._blob = False  # inside a large-object block: chunks end one object, not the block
        self._newlines = 0
        self._left = 0  # bytes of the current chunk still to come
        self._last_chunk = b""
        self._cut: bytearray | None = None
        self._chunk: struct.Struct | None = None
        self._heads = _Heads(4)
        self._slow = 0  # chunks left to read one by one
        self._backoff = 1

    def _parse(self, pos: int) -> int:
        while pos < len(self._buf):
            state = self._state
            try:
                if state == "head":
                    moved = self._read_head_and_toc()
                    self._state = "block"
                elif state == "block":
                    moved = self._read_block_header(pos)
                elif state == "blob":
                    oid, moved = self._read_int(pos)
                    self._state, self._blob = ("chunks", True) if oid else ("block", False)
                else:
                    moved = self._read_chunks(pos)
            except _NeedMore:
                return pos
            if moved == pos and self._state == state:
                return pos  # a chunk's length prefix is cut by the buffer's end
            pos = moved
        return pos

    # --- archive primitives (ReadInt, ReadStr of pg_backup_archiver.c) ---

    def _read_int(self, pos: int) -> tuple[int, int]:
        end = pos + 1 + self._int_size
        if end > len(self._buf):
            raise _NeedMore
        value = int.from_bytes(self._buf[pos + 1 : end], "little")
        return (-value if self._buf[pos] else value), end

    def _read_str(self, pos: int) -> tuple[bytes | None, int]:
        length, pos = self._read_int(pos)
        if length < 0:
            return None, pos
        if pos + length > len(self._buf):
            raise _NeedMore
        return bytes(self._buf[pos : pos + length]), pos + length

    def _read_head_and_toc(self) -> int:
        """ReadHead, then ReadToc with the custom format's extra TOC data; from the start each
        time the buffer grows until it holds them whole (they are small beside the data)."""
        buf = self._buf
        if len(buf) < 12:
            raise _NeedMore
        if buf[:5] != b"PGDMP" or buf[5] != 1 or buf[6] not in READABLE_VERSIONS:
            raise Unreadable
        minor, self._int_size, off_size, fmt = buf[6], buf[8], buf[9], buf[10]
        if fmt != FORMAT_CUSTOM or self._int_size not in (4, 8):
            raise Unreadable
        self._chunk = struct.Struct("<B" + ("I" if self._int_size == 4 else "Q"))
        self._heads = _Heads(self._int_size)
        pos = 11
        if minor >= 15:
            compressed, pos = buf[pos], pos + 1  # compression algorithm, 0: none
        else:
            compressed, pos = self._read_int(pos)  # compression level, 0: none
        if compressed:
            raise Unreadable
        for _ in range(7):  # creation time: sec, min, hour, mday, mon, year, isdst
            _, pos = self._read_int(pos)
        for _ in range(3):  # database name, server version, pg_dump version
            _, pos = self._read_str(pos)
        entries, pos = self._read_int(pos)
        tables: dict[int, str] = {}
        for _ in range(entries):
            dump_id, pos = self._read_int(pos)
            _, pos = self._read_int(pos)  # had a data dumper
            fields: list[bytes | None] = []
            for _ in range(4):  # tableoid, oid, tag, desc
                value, pos = self._read_str(pos)
                fields.append(value)
            _, pos = self._read_int(pos)  # section
            for _ in range(6 if minor >= 14 else 5):  # defn, drop, copy, namespace, tablespace, am
                value, pos = self._read_str(pos)
                fields.append(value)
            if minor >= 16:
                _, pos = self._read_int(pos)  # relkind
            for _ in range(2):  # owner, "false" (WITH OIDS)
                _, pos = self._read_str(pos)
            dependency: bytes | None = b""
            while dependency is not None:
                dependency, pos = self._read_str(pos)
            pos += 1 + off_size  # data offset: a state byte, offSize bytes
            if pos > len(buf):
                raise _NeedMore
            tag, desc, namespace = fields[2], fields[3], fields[7]
            if desc == b"TABLE DATA" and namespace == self._schema.encode() and tag is not None:
                with contextlib.suppress(UnicodeDecodeError):  # not UTF-8: left to count(*)
                    tables[dump_id] = tag.decode()
        self._tables = tables
        return pos

    # --- data blocks ---

    def _read_block_header(self, pos: int) -> int:
        if pos + 2 + self._int_size > len(self._buf):
            raise _NeedMore
        kind = self._buf[pos]
        dump_id, pos = self._read_int(pos + 1)
        if kind == BLK_DATA:
            self._state, self._blob = "chunks", False
            self._table = self._tables.get(dump_id)
            self._newlines, self._last_chunk = 0, b""
        elif kind == BLK_BLOBS:
            self._state, self._table = "blob", None
        else:
            raise Unreadable
        return pos

    def _read_chunks(self, pos: int) -> int:
        """The hot loop: one length-prefixed chunk per row. Counts newlines chunk by chunk; a
        chunk cut by the buffer's end is counted as far as it goes, the rest in `_left`."""
        buf, end = self._buf, len(self._buf)
        count = buf.count
        if self._left:
            stop = min(end, pos + self._left)
            self._newlines += count(10, pos, stop)
            self._left -= stop - pos
            if self._cut is not None:
                self._cut += buf[pos:stop]
            if not self._left:
                self._last_chunk = bytes(self._cut) if self._cut is not None else b""
            return stop
        assert self._chunk is not None
        unpack, size = self._chunk.unpack_from, self._chunk.size
        budget = -1  # chunks to read one by one before the bulk path is tried again
        if not self._blob and end - pos >= FAST_MIN and unpack(buf, pos)[1] <= BULK_ROW:
            if self._slow:
                budget = self._slow
            else:
                consumed, rows = _one_row_chunks(buf, pos, min(end, pos + WINDOW), self._heads)
                if consumed:
                    self._newlines += rows
                    self._last_chunk = b""  # never the terminator: that has 3 newlines
                    self._backoff = 1
                    return pos + consumed
                # Rows whose length prefix holds 0x0A all along (266 bytes, say) would fail the
                # bulk path at every chunk: back off, up to BACKOFF chunks one by one.
                budget = self._backoff
                self._backoff = min(2 * self._backoff, BACKOFF)
        newlines, start, stop = 0, pos, pos
        while pos + size <= end and budget:
            budget -= 1
            sign, length = unpack(buf, pos)
            if sign:
                raise Unreadable
            if not length:
                self._newlines += newlines
                if stop > start:
                    self._last_chunk = _small(buf, start, stop)
                self._end_block()
                return pos + size
            start = pos + size
            stop = start + length
            if stop > end:
                self._newlines += newlines + count(10, start, end)
                self._left = stop - end
                # The terminator may be cut by a read too: keep what may be it.
                self._cut = bytearray(buf[start:end]) if length == len(TERMINATOR) else None
                return end
            newlines += count(10, start, stop)
            pos = stop
        self._slow = max(budget, 0)
        self._newlines += newlines
        if stop > start:
            self._last_chunk = _small(buf, start, stop)
        return pos

    def _end_block(self) -> None:
        if self._blob:
            self._state = "blob"
            return
        self._state = "block"
        if self._table is not None:
            whole = self._last_chunk == TERMINATOR
            rows = self._newlines - TERMINATOR_NEWLINES if whole else None
            self._tally.record(self._table, rows)


class _Heads(dict[int, bytes]):
    """Piece length → the length prefix a one-row chunk of that piece would start with."""

    def __init__(self, int_size: int) -> None:
        super().__init__()
        self.size = int_size + 1
        self.never = b"\xff" * self.size  # longer than any piece too short to be a chunk

    def __missing__(self, piece: int) -> bytes:
        length = piece - self.size + 1  # the piece lost the chunk's newline, kept its prefix
        head = b"\x00" + length.to_bytes(self.size - 1, "little") if length > 0 else self.never
        self[piece] = head
        return head


def _one_row_chunks(buf: bytearray, pos: int, stop: int, heads: _Heads) -> tuple[int, int]:
    """The bulk path, in C loops: pg_dump -Z0 writes one chunk per row, so split on newlines and
    take the leading pieces that each are a chunk whole: its length prefix says the piece plus
    its newline, so that chunk holds exactly one newline, its last byte, and the next chunk
    starts at the next piece. Returns (bytes consumed, newlines counted): the first piece that is
    not such a chunk (a length prefix holding a 0x0A byte, the terminator, the block's end, a
    chunk cut by `stop`) is left to the chunk-by-chunk loop."""
    pieces = bytes(buf[pos:stop]).split(b"\n")
    pieces.pop()  # after the last newline: not a whole chunk
    lengths = list(map(len, pieces))
    whole_chunk = list(map(bytes.startswith, pieces, map(heads.__getitem__, lengths)))
    whole = whole_chunk.index(False) if False in whole_chunk else len(pieces)
    return sum(lengths[:whole]) + whole, whole


def _small(buf: bytearray, start: int, stop: int) -> bytes:
    """The chunk if it may be the terminator (kept across feeds), else nothing."""
    return bytes(buf[start:stop]) if stop - start == len(TERMINATOR) else b""
