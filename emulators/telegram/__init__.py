"""A local stand-in for the Telegram Bot API cloud, for the tests of Telegram storage and notices.

No real Telegram can run here, so this one has to refuse what Telegram refuses: a stand-in that is
more lenient than the service would let a backend pass its tests and then fail in production.

Limits, and why these numbers (all configurable; tests use small ones to exercise splitting):

- Upload (`UPLOAD_LIMIT` = 50,000,000 bytes). The docs say "up to 50 MB"; reports of refused
  uploads show `truncate -s 50M` (50 MiB) files refused, with 413 "Request Entity Too Large". The
  unit is not documented, so the stricter reading is used: decimal megabytes, counted over the
  whole request body as a front proxy does, so the multipart envelope counts too. Anything this
  accepts, the real service accepts under either reading.
- Download (`DOWNLOAD_LIMIT` = 20,000,000 bytes). The docs say "up to 20MB"; the open-source Bot
  API server has `MAX_DOWNLOAD_FILE_SIZE = 20 << 20` (20,971,520, `REAL_SERVER_DOWNLOAD_LIMIT`)
  and refuses `getFile` above it with 400 "Bad Request: file is too big". The stricter decimal
  value is used here, so a part size chosen against this stand-in is also safe against any
  deployment reading "20MB" as decimal.
- `deleteMessage` only within 48 hours of sending (400 "Bad Request: message can't be deleted");
  the stand-in's clock can be moved with `advance_clock`.
- A download link (`file_path`) is guaranteed for one hour; here it expires after exactly one.
- Text: 1-4096 characters after entity parsing (counted in UTF-16 units, the stricter count);
  captions up to 1024. HTML parse mode refuses unsupported tags, unbalanced tags and bare `<`,
  `>`, `&`; MarkdownV2 refuses the reserved characters that never start an entity
  (`# + - = { } . !`) unless escaped. Legacy Markdown is not checked.

Behaviour kept from the real service: methods are case-insensitive and accept GET or POST with
query-string, JSON, urlencoded or multipart arguments; errors are
`{"ok": false, "error_code": N, "description": "..."}`; 429 carries `parameters.retry_after` and a
`Retry-After` header; a well-formed but unknown token answers 401 "Unauthorized", a malformed one
401 "Unauthorized: invalid token specified"; an unknown method 404 "Not Found: method not found".

Faults on demand: `rate_limit_next` (429), `fail_next` (the call fails before it takes effect) and
`lose_answer_next` (the call takes effect, then the answer is lost: what a client sees when a
timeout or a proxy's 5xx comes after Telegram stored the message).

Not emulated: methods other than getMe, sendMessage, sendDocument, getFile and deleteMessage
(they answer 404 like unknown ones), automatic flood control (use `rate_limit_next`), and
per-chat message ids (ids here are unique across chats; a message is still only found in its own
chat).

Parts: server.py (FakeTelegramAPI: lifecycle, faults on demand, dispatch), methods.py (what each
method checks and answers), limits.py (the limits, records and error answers), text.py (parse
modes and lengths), http.py (request bodies and argument forms).
"""

from emulators.telegram.limits import (
    DELETE_WINDOW_SECONDS,
    DOWNLOAD,
    DOWNLOAD_LIMIT,
    FILE_LINK_TTL_SECONDS,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    REAL_SERVER_DOWNLOAD_LIMIT,
    UPLOAD_LIMIT,
    SentMessage,
    StoredDocument,
)
from emulators.telegram.server import FakeTelegramAPI

__all__ = [
    "DELETE_WINDOW_SECONDS",
    "DOWNLOAD",
    "DOWNLOAD_LIMIT",
    "FILE_LINK_TTL_SECONDS",
    "MAX_CAPTION_LENGTH",
    "MAX_TEXT_LENGTH",
    "REAL_SERVER_DOWNLOAD_LIMIT",
    "UPLOAD_LIMIT",
    "FakeTelegramAPI",
    "SentMessage",
    "StoredDocument",
]
