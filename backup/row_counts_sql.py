"""Row counts of a plain-format dump (pg_dump -Fp) as it streams by: see backup/row_counts.py.

Each table's data is `COPY schema.table (columns) FROM stdin;` at statement level, one line per
row, then a `\\.` line. The SQL between is scanned for quotes, dollar quotes and comments, so a
function body, a comment or a view holding such lines is not mistaken for data.
"""

from __future__ import annotations

import re

from backup.row_counts import Buffered, Unreadable

# The tokens that change how the SQL between data sections is read.
_IDENT = rb'(?:"(?:[^"]|"")*"|[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)'
_COPY = re.compile(
    rb"COPY (" + _IDENT + rb")\.(" + _IDENT + rb") "
    rb"(?:\(" + _IDENT + rb"(?:, " + _IDENT + rb")*\))? FROM stdin;\n"
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


class PlainSqlCounter(Buffered):
    """Counts the lines of each `COPY ... FROM stdin;` section of a plain-format dump."""

    START = 1  # one byte kept before the unread part: is it a line start?

    def __init__(self, schema: str) -> None:
        super().__init__()
        self._schema = schema
        self._buf = bytearray(b"\n")
        self._table: str | None = None  # inside a data section (of another schema: "")
        self._rows = 0
        self._mid_line = False

    def _parse(self, pos: int) -> int:
        while pos < len(self._buf):
            moved = self._data(pos) if self._table is not None else self._sql(pos)
            if moved == pos:
                break
            pos = moved
        return pos

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
                    raise Unreadable
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
