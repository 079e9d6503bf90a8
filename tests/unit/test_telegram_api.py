"""The Telegram Bot API stand-in itself: it must answer like the real service, limits included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulators.telegram import (
    DOWNLOAD,
    DOWNLOAD_LIMIT,
    REAL_SERVER_DOWNLOAD_LIMIT,
    UPLOAD_LIMIT,
    FakeTelegramAPI,
)

TOKEN = "123456789:AAFakeTokenForTheExportBackupTests_x1"
CHAT = -1001234567890
TOPIC = 7


@pytest.fixture
def telegram() -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI(
        TOKEN,
        {CHAT, "@backup_channel"},
        upload_limit=100_000,
        download_limit=10_000,
        forum_topics={CHAT: {TOPIC}},
    ) as fake:
        yield fake


@pytest.fixture
def http(telegram: FakeTelegramAPI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=telegram.api_url, timeout=5) as client:
        yield client


def send_document(
    http: httpx.Client, data: bytes, name: str = "part-0001.bin", **fields: Any
) -> httpx.Response:
    form = {"chat_id": str(CHAT), **{key: str(value) for key, value in fields.items()}}
    return http.post(
        "/sendDocument",
        data=form,
        files={"document": (name, data, "application/octet-stream")},
    )


def assert_error(response: httpx.Response, status: int, description: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["ok"] is False
    assert body["error_code"] == status
    assert body["description"] == description
    return body


def test_defaults_are_the_stricter_reading_of_telegrams_limits() -> None:
    fake = FakeTelegramAPI(TOKEN, {CHAT})
    assert fake.upload_limit == UPLOAD_LIMIT == 50_000_000
    assert fake.download_limit == DOWNLOAD_LIMIT == 20_000_000 < REAL_SERVER_DOWNLOAD_LIMIT


def test_send_get_file_and_download_round_trip(
    telegram: FakeTelegramAPI, http: httpx.Client
) -> None:
    data = bytes(range(256)) * 30  # binary, with CR/LF bytes and boundary-like dashes
    sent = send_document(http, data, caption="backup part 1/3", message_thread_id=TOPIC)
    assert sent.status_code == 200, sent.text
    message = sent.json()["result"]
    assert message["chat"]["id"] == CHAT
    assert message["message_thread_id"] == TOPIC
    assert message["caption"] == "backup part 1/3"
    document = message["document"]
    assert document["file_name"] == "part-0001.bin"
    assert document["file_size"] == len(data)

    file = http.post("/getFile", json={"file_id": document["file_id"]}).json()["result"]
    assert file["file_unique_id"] == document["file_unique_id"]
    assert file["file_size"] == len(data)
    downloaded = httpx.get(f"{telegram.base_url}/file/bot{TOKEN}/{file['file_path']}")
    assert downloaded.status_code == 200
    assert downloaded.content == data

    stored = telegram.documents[message["message_id"]]
    assert (stored.data, stored.chat_id, stored.message_thread_id) == (data, CHAT, TOPIC)
    assert telegram.requests == [("sendDocument", True), ("getFile", True), (DOWNLOAD, True)]


def test_download_link_expires_after_an_hour(telegram: FakeTelegramAPI, http: httpx.Client) -> None:
    file_id = send_document(http, b"x" * 10).json()["result"]["document"]["file_id"]
    path = http.get("/getFile", params={"file_id": file_id}).json()["result"]["file_path"]
    telegram.advance_clock(3600)
    expired = httpx.get(f"{telegram.base_url}/file/bot{TOKEN}/{path}")
    assert_error(expired, 404, "Not Found")
    path = http.get("/getFile", params={"file_id": file_id}).json()["result"]["file_path"]
    assert httpx.get(f"{telegram.base_url}/file/bot{TOKEN}/{path}").content == b"x" * 10


def test_unknown_token_is_unauthorized(telegram: FakeTelegramAPI) -> None:
    other = httpx.get(f"{telegram.base_url}/bot999:WrongSecret/getMe")
    assert_error(other, 401, "Unauthorized")
    malformed = httpx.get(f"{telegram.base_url}/botnot-a-token/getMe")
    assert_error(malformed, 401, "Unauthorized: invalid token specified")
    download = httpx.get(f"{telegram.base_url}/file/bot999:WrongSecret/documents/file_0")
    assert download.status_code == 401


def test_unknown_chat_and_thread(http: httpx.Client) -> None:
    assert_error(
        http.post("/sendMessage", json={"chat_id": 42, "text": "hi"}),
        400,
        "Bad Request: chat not found",
    )
    assert_error(
        send_document(http, b"abc", message_thread_id=99),
        400,
        "Bad Request: message thread not found",
    )
    assert_error(
        http.post("/sendMessage", json={"text": "hi"}), 400, "Bad Request: chat_id is empty"
    )


def test_upload_over_the_limit_is_refused_with_413(
    telegram: FakeTelegramAPI, http: httpx.Client
) -> None:
    # The limit counts the whole request body, so a file of exactly the limit does not fit.
    assert_error(send_document(http, b"\0" * 100_000), 413, "Request Entity Too Large")
    assert_error(send_document(http, b"\0" * 100_001), 413, "Request Entity Too Large")
    assert send_document(http, b"\0" * 99_000).status_code == 200
    assert [ok for _, ok in telegram.requests] == [False, False, True]
    assert len(telegram.documents) == 1


def test_get_file_over_the_download_limit_is_too_big(http: httpx.Client) -> None:
    at_limit = send_document(http, b"a" * 10_000).json()["result"]["document"]["file_id"]
    over = send_document(http, b"a" * 10_001).json()["result"]["document"]["file_id"]
    assert http.post("/getFile", data={"file_id": at_limit}).status_code == 200
    assert_error(http.post("/getFile", data={"file_id": over}), 400, "Bad Request: file is too big")
    assert_error(
        http.post("/getFile", data={"file_id": "nope"}), 400, "Bad Request: invalid file_id"
    )


def test_rate_limit_answers_429_and_records_the_wait(
    telegram: FakeTelegramAPI, http: httpx.Client
) -> None:
    telegram.rate_limit_next("sendMessage", retry_after=1)
    limited = http.post("/sendMessage", json={"chat_id": CHAT, "text": "hi"})
    body = assert_error(limited, 429, "Too Many Requests: retry after 1")
    assert body["parameters"] == {"retry_after": 1}
    assert limited.headers["Retry-After"] == "1"
    time.sleep(1)
    assert http.post("/sendMessage", json={"chat_id": CHAT, "text": "hi"}).status_code == 200
    [wait] = telegram.waits_after_rate_limit("sendMessage")
    assert wait >= 1
    assert telegram.requests == [("sendMessage", False), ("sendMessage", True)]


def test_transient_failures(telegram: FakeTelegramAPI, http: httpx.Client) -> None:
    telegram.fail_next("getMe", status=500)
    telegram.fail_next("getme", status=502)
    assert_error(http.get("/getMe"), 500, "Internal Server Error")
    proxy = http.get("/getMe")
    assert proxy.status_code == 502
    assert proxy.headers["Content-Type"] == "text/html"  # not JSON, like the real front proxy
    assert http.get("/getMe").json()["result"]["id"] == 123456789
    with pytest.raises(ValueError, match="not emulated"):
        telegram.fail_next("sendPhoto")


def test_a_lost_answer_still_takes_effect(telegram: FakeTelegramAPI, http: httpx.Client) -> None:
    """A 504 after Telegram stored the document: a retry posts a second copy."""
    telegram.lose_answer_next("sendDocument")
    lost = send_document(http, b"part one")
    assert lost.status_code == 504 and lost.headers["Content-Type"] == "text/html"
    assert send_document(http, b"part one").json()["ok"] is True
    assert [d.data for d in telegram.documents.values()] == [b"part one", b"part one"]
    assert telegram.requests == [("sendDocument", False), ("sendDocument", True)]
    with pytest.raises(ValueError, match="5xx"):
        telegram.lose_answer_next("sendDocument", status=400)


def test_send_message_as_json_form_and_query(telegram: FakeTelegramAPI, http: httpx.Client) -> None:
    by_json = http.post(
        "/sendMessage",
        json={"chat_id": CHAT, "text": "<b>ok</b> &amp; done", "parse_mode": "HTML"},
    )
    assert by_json.json()["result"]["text"] == "ok & done"
    by_form = http.post(
        "/SENDMESSAGE",  # method names are case-insensitive
        data={"chat_id": "@backup_channel", "text": "form", "message_thread_id": "3"},
    )
    assert by_form.status_code == 200, by_form.text
    by_query = http.get("/sendMessage", params={"chat_id": str(CHAT), "text": "query"})
    assert by_query.status_code == 200
    ids = [r.json()["result"]["message_id"] for r in (by_json, by_form, by_query)]
    assert [telegram.messages[i] for i in ids] == ["<b>ok</b> &amp; done", "form", "query"]
    assert telegram.sent_messages[ids[1]].message_thread_id == 3
    assert telegram.sent_messages[ids[0]].parse_mode == "HTML"


def test_send_message_refuses_what_telegram_refuses(http: httpx.Client) -> None:
    def send(text: str, parse_mode: str | None = None) -> httpx.Response:
        return http.post(
            "/sendMessage", json={"chat_id": CHAT, "text": text, "parse_mode": parse_mode}
        )

    assert_error(send("x" * 4097), 400, "Bad Request: message is too long")
    assert send("x" * 4096).status_code == 200
    assert_error(send("  "), 400, "Bad Request: message text is empty")
    unescaped = send("rows < 10", "HTML").json()
    assert unescaped["description"].startswith("Bad Request: can't parse entities: ")
    assert send("<b>open", "HTML").status_code == 400
    assert send("<blink>x</blink>", "HTML").status_code == 400
    assert send("done.", "MarkdownV2").status_code == 400
    assert send("done\\.", "MarkdownV2").status_code == 200
    assert send("x", "BBCode").status_code == 400


def test_delete_message_within_48_hours(telegram: FakeTelegramAPI, http: httpx.Client) -> None:
    first = send_document(http, b"old").json()["result"]["message_id"]
    telegram.advance_clock(48 * 3600)
    second = send_document(http, b"new").json()["result"]["message_id"]
    ok = http.post("/deleteMessage", json={"chat_id": CHAT, "message_id": second})
    assert ok.json() == {"ok": True, "result": True}
    assert telegram.deleted == {second}
    assert_error(
        http.post("/deleteMessage", json={"chat_id": CHAT, "message_id": second}),
        400,
        "Bad Request: message to delete not found",
    )
    assert_error(
        http.post("/deleteMessage", json={"chat_id": CHAT, "message_id": first}),
        400,
        "Bad Request: message can't be deleted",
    )
    assert_error(
        http.post("/deleteMessage", json={"chat_id": "@backup_channel", "message_id": first}),
        400,
        "Bad Request: message to delete not found",
    )


def test_unknown_method_and_missing_document(http: httpx.Client) -> None:
    assert_error(http.post("/sendPhoto"), 404, "Not Found: method not found")
    assert_error(
        http.post("/sendDocument", data={"chat_id": str(CHAT)}),
        400,
        "Bad Request: there is no document in the request",
    )


async def test_usable_from_async_code() -> None:
    async with (
        FakeTelegramAPI(TOKEN, {CHAT}) as telegram,
        httpx.AsyncClient(base_url=telegram.api_url) as client,
    ):
        me = (await client.get("/getMe")).json()["result"]
        assert me["is_bot"] is True
        sent = await client.post("/sendMessage", data={"chat_id": str(CHAT), "text": "async"})
        assert sent.status_code == 200
    assert telegram.messages == {1: "async"}
