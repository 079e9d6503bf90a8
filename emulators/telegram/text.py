"""Text as Telegram reads it: parse modes, entity parsing (HTML, MarkdownV2) and lengths in
UTF-16 units, refused with the 400 Telegram would answer."""

from __future__ import annotations

import re
from collections.abc import Mapping

from emulators.telegram.limits import ApiError, bad_request

_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)
_HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
_MARKDOWN_V2_ALWAYS_ESCAPED = frozenset("#+-={}.")
_PARSE_MODES = {"html": "HTML", "markdown": "Markdown", "markdownv2": "MarkdownV2"}


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def read_parse_mode(args: Mapping[str, str]) -> str | None:
    raw = args.get("parse_mode", "").strip()
    if not raw:
        return None
    mode = _PARSE_MODES.get(raw.lower())
    if mode is None:
        raise bad_request(f"unsupported parse_mode {raw!r}")
    return mode


def parse_entities(text: str, parse_mode: str | None) -> str:
    if parse_mode == "HTML":
        return _parse_html(text)
    if parse_mode == "MarkdownV2":
        return _parse_markdown_v2(text)
    return text


def _entity_error(detail: str, text: str, index: int) -> ApiError:
    offset = len(text[:index].encode("utf-8"))
    return bad_request(f"can't parse entities: {detail} at byte offset {offset}")


def _parse_html(text: str) -> str:
    """Telegram's HTML subset: the plain text, or the 400 Telegram would answer."""
    plain: list[str] = []
    open_tags: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "<":
            end = text.find(">", index)
            if end < 0:
                raise _entity_error("Unclosed start tag", text, index)
            inner = text[index + 1 : end]
            if inner.startswith("/"):
                name = inner[1:].strip().lower()
                if not open_tags:
                    raise _entity_error(f'Unexpected end tag "{name}"', text, index)
                if name != open_tags[-1]:
                    raise _entity_error(
                        f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"',
                        text,
                        index,
                    )
                open_tags.pop()
            else:
                name, _, attributes = inner.partition(" ")
                name = name.strip().lower()
                if name not in _HTML_TAGS:
                    raise _entity_error(f'Unsupported start tag "{name}"', text, index)
                if name == "span" and "tg-spoiler" not in attributes:
                    raise _entity_error('Tag "span" must have class "tg-spoiler"', text, index)
                open_tags.append(name)
            index = end + 1
        elif char == "&":
            match = _HTML_ENTITY.match(text, index)
            if match is None:
                raise _entity_error("Character '&' must be escaped as &amp;", text, index)
            entity = match.group()
            plain.append({"&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"'}.get(entity, "?"))
            index = match.end()
        elif char == ">":
            raise _entity_error("Character '>' must be escaped as &gt;", text, index)
        else:
            plain.append(char)
            index += 1
    if open_tags:
        raise _entity_error(
            f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"', text, len(text)
        )
    return "".join(plain)


def _parse_markdown_v2(text: str) -> str:
    """Only the reserved characters that can never start an entity are checked."""
    plain: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            plain.append(text[index + 1])
            index += 2
            continue
        if char in _MARKDOWN_V2_ALWAYS_ESCAPED or (
            char == "!" and text[index + 1 : index + 2] != "["
        ):
            raise bad_request(
                f"can't parse entities: Character '{char}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        if char not in "*_~|`[]()>":
            plain.append(char)
        index += 1
    return "".join(plain)
