"""Exact row counts read from pg_dump's own output as it streams through the worker.

The manifest's row counts are the test-restore contract, so they must be exact and of the dump's
snapshot. Counting the COPY data the dump itself carries is both by construction, and costs the
database nothing (a count(*) per table scans every heap a second time, beside the dump).

COPY text escapes newlines inside values, so each row is exactly one b"\\n", and pg_dump ends
each table's data with the terminator b"\\.\\n\\n\\n" (three newlines more, not rows). Type output
functions return C strings, so COPY text never holds a NUL byte.

- Custom format (pg_backup_custom.c, pg_backup_archiver.c, archive versions 1.12 to 1.16): header,
  TOC (dumpId → namespace, tag, desc), then data blocks: a block type byte, the dumpId, chunks each
  prefixed by its length (an archive int: sign byte, then intSize bytes little-endian), a zero
  length closing the block. pg_dump -Z0 writes one chunk per row, plus one for the terminator.
- Plain format: `COPY schema.table (columns) FROM stdin;` at statement level, rows, a `\\.` line.
  The SQL between is scanned for quotes, dollar quotes and comments, so a function body that
  contains such a line is not mistaken for data.

Anything else (a compressed or unknown archive, a version not listed, a table seen twice or not at
all, or without its terminator) is left uncounted: `counts` holds only tables read whole, and the
caller counts the rest with count(*) in the same snapshot. Never a guess.
"""

from __future__ import annotations

import contextlib
import re
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
        return PlainSqlCounter(schema)
    return None


class _NeedMore(Exception):
    """The buffer ends inside the item being read."""


class _Unreadable(Exception):
    """The stream is not an archive this parser reads: count nothing more from it."""


class _Tally:
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


class CustomArchiveCounter:
    """Parses a `pg_dump -Fc -Z0` stream incrementally, counting newlines per TABLE DATA block."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._buf = bytearray()
        self._state = "head"
        self._tally = _Tally()
        self._int_size = 4
        self._tables: dict[int, str] = {}  # dumpId → table, for this schema's TABLE DATA
        self._table: str | None = None  # the block being read, None for another entry's
        self._blob = False  # inside a large-object block: chunks end one object, not the block
        self._newlines = 0
        self._left = 0  # bytes of the current chunk still to come
        self._last_chunk = b""
        self._cut: bytearray | None = None
        self._chunk: struct.Struct | None = None

    def counts(self) -> dict[str, int]:
        return dict(self._tally.rows)

    def feed(self, data: bytes) -> None:
        if self._state == "unreadable":
            return
        self._buf += data
        try:
            pos = self._parse(0)
        except Exception:  # _Unreadable, or a surprise: the tables left are counted by count(*)
            self._state = "unreadable"
            self._buf = bytearray()
            return
        del self._buf[:pos]
        if len(self._buf) > MAX_BUFFERED:
            self._state = "unreadable"
            self._buf = bytearray()

    def _parse(self, pos: int) -> int:
        """Consume what is whole in the buffer; return where the unread part starts."""
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
            raise _Unreadable
        minor, self._int_size, off_size, fmt = buf[6], buf[8], buf[9], buf[10]
        if fmt != FORMAT_CUSTOM or self._int_size not in (4, 8):
            raise _Unreadable
        self._chunk = struct.Struct("<B" + ("I" if self._int_size == 4 else "Q"))
        pos = 11
        if minor >= 15:
            compressed, pos = buf[pos], pos + 1  # compression algorithm, 0: none
        else:
            compressed, pos = self._read_int(pos)  # compression level, 0: none
        if compressed:
            raise _Unreadable
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
            raise _Unreadable
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
        newlines, start, stop = 0, pos, pos
        while pos + size <= end:
            sign, length = unpack(buf, pos)
            if sign:
                raise _Unreadable
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


def _small(buf: bytearray, start: int, stop: int) -> bytes:
    """The chunk if it may be the terminator (kept across feeds), else nothing."""
    return bytes(buf[start:stop]) if stop - start == len(TERMINATOR) else b""


# Plain format: the tokens that change how the SQL between data sections is read.
_IDENT = rb'(?:"(?:[^"]|"")*"|[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)'
_COPY = re.compile(
    rb"COPY (" + _IDENT + rb")\.(" + _IDENT + rb") "
    rb"(?:\(" + _IDENT + rb"(?:, " + _IDENT + rb")*\) )?FROM stdin;\n"
)
_TOKEN = re.compile(
    rb"(?<=\n)COPY |(?<![A-Za-z0-9_$\x80-\xff])[Ee]'|'|\"|--|/\*"
    rb"|(?<![A-Za-z0-9_$\x80-\xff])\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$"
)
_CLOSE = {
    b"'": re.compile(rb"(?:[^']|'')*'"),
    b"E'": re.compile(rb"(?:[^'\\]|''|\\[\s\S])*'"),
    b'"': re.compile(rb'(?:[^"]|"")*"'),
}
_COMMENT = re.compile(rb"/\*|\*/")


def _unquote(ident: bytes) -> str:
    if ident.startswith(b'"'):
        return ident[1:-1].replace(b'""', b'"').decode()
    return ident.decode()


class PlainSqlCounter:
    """Counts the lines of each `COPY ... FROM stdin;` section of a plain-format dump."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._buf = bytearray(b"\n")
        self._tally = _Tally()
        self._table: str | None = None  # inside a data section (of another schema: "")
        self._rows = 0
        self._mid_line = False
        self._unreadable = False

    def counts(self) -> dict[str, int]:
        return dict(self._tally.rows)

    def feed(self, data: bytes) -> None:
        if self._unreadable:
            return
        self._buf += data
        pos = 1  # the buffer keeps one byte before the unread part: is it a line start?
        try:
            while pos < len(self._buf):
                moved = self._data(pos) if self._table is not None else self._sql(pos)
                if moved == pos:
                    break
                pos = moved
        except Exception:  # _Unreadable, or a surprise: the tables left are counted by count(*)
            self._unreadable, self._buf = True, bytearray()
            return
        del self._buf[: pos - 1]
        if len(self._buf) > MAX_BUFFERED:
            self._unreadable, self._buf = True, bytearray()

    def _sql(self, pos: int) -> int:
        """Skip SQL up to the next statement-level COPY; quotes and comments are skipped whole
        (kept in the buffer until they close)."""
        buf = self._buf
        found = _TOKEN.search(buf, pos)
        if found is None:
            # No token spans a line break: keep only the last, unfinished line.
            return buf.rfind(b"\n", pos) + 1 or pos
        token, at = found.group(), found.start()
        if token == b"COPY ":
            copy = _COPY.match(buf, at)
            if copy is None:
                if b"FROM stdin;\n" in buf[at:]:
                    raise _Unreadable
                return pos
            schema, table = _unquote(copy.group(1)), _unquote(copy.group(2))
            self._table = table if schema == self._schema else ""
            self._rows, self._mid_line = 0, False
            return copy.end()
        if token == b"--":
            return _after(buf.find(b"\n", found.end()), 1, pos)
        if token == b"/*":
            return self._block_comment(found.end(), pos)
        if token.startswith(b"$"):
            return _after(buf.find(token, found.end()), len(token), pos)
        close = _CLOSE[b"E'" if token in (b"E'", b"e'") else token].match(buf, found.end())
        if close is None or close.end() == len(buf):
            return pos  # unclosed, or closed by a quote that may be the first of ''
        return close.end()

    def _block_comment(self, pos: int, start: int) -> int:
        depth = 1
        while depth:
            mark = _COMMENT.search(self._buf, pos)
            if mark is None:
                return start
            depth += 1 if mark.group() == b"/*" else -1
            pos = mark.end()
        return pos

    def _data(self, pos: int) -> int:
        """Rows up to the `\\.` line; a row longer than the buffer is counted, not kept."""
        buf, end = self._buf, len(self._buf)
        if self._mid_line:
            newline = buf.find(b"\n", pos)
            if newline < 0:
                return end
            self._rows += 1
            self._mid_line = False
            pos = newline + 1
        if buf.startswith(b"\\.\n", pos):
            return self._end_section(pos + 3)
        terminator = buf.find(b"\n\\.\n", pos)
        if terminator >= 0:
            self._rows += buf.count(10, pos, terminator + 1)
            return self._end_section(terminator + 4)
        last = buf.rfind(b"\n", pos)
        if last >= 0:
            self._rows += buf.count(10, pos, last + 1)
            pos = last + 1
        if b"\\.\n".startswith(buf[pos:end]):
            return pos  # maybe the start of the terminator: wait for the rest
        self._mid_line = True
        return end

    def _end_section(self, pos: int) -> int:
        if self._table:
            self._tally.record(self._table, self._rows)
        self._table = None
        return pos


def _after(index: int, length: int, otherwise: int) -> int:
    return otherwise if index < 0 else index + length
