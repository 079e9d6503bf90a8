"""Encrypted workflow payloads: history holds ciphertext, the codec server (and through it the
`temporal` CLI) shows the plaintext to whoever is allowed to reach it."""

from __future__ import annotations

import base64
import json
import os
import threading
import types
from collections.abc import Iterator

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from backup.errors import ConfigurationError
from client.codec import EncryptionCodec, data_converter
from codec_server import serve
from devstack.ports import free_port
from devstack.temporal import run_temporal_cli
from tests.standins import harness, run_with_workers

KEY = base64.b64encode(os.urandom(32)).decode()
EMAIL = "alice.personal@tenant.example"


def test_codec_round_trip_and_tamper_detection() -> None:
    codec = EncryptionCodec.from_base64(KEY)
    original = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"e": EMAIL}).encode())
    sealed = codec.encrypt(original)
    assert EMAIL.encode() not in sealed.SerializeToString()
    assert codec.decrypt(sealed) == original
    forged = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(Exception):  # noqa: B017 - AESGCM raises InvalidTag
        codec.decrypt(forged)
    with pytest.raises(ValueError, match="key"):
        EncryptionCodec.from_base64(KEY, key_id="other").decrypt(sealed)


def test_a_bad_key_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="PAYLOAD_ENCRYPTION_KEY"):
        EncryptionCodec.from_base64("not base64 at all!")


@pytest.fixture
def codec_server() -> Iterator[str]:
    server = serve(EncryptionCodec.from_base64(KEY), free_port(), None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_history_holds_ciphertext_and_the_codec_server_decodes_it(
    dev_env: WorkflowEnvironment, task_queue: str, codec_server: str
) -> None:
    encrypted = Client(
        dev_env.client.service_client, namespace="default", data_converter=data_converter(KEY)
    )
    h = harness(types.SimpleNamespace(client=encrypted), task_queue)  # type: ignore[arg-type]
    result = await run_with_workers(
        h, h.fakes.host_queues, {"project_id": "acme", "notify_email": EMAIL}
    )
    assert result.project_id == "acme"
    assert h.fakes.notifications[0].notify_email == EMAIL  # the activities saw the plaintext

    workflow_id = (await encrypted.list_workflows(f"TaskQueue = '{task_queue}'").__anext__()).id
    history = await dev_env.client.get_workflow_handle(workflow_id).fetch_history()
    assert EMAIL not in history.to_json()
    started = history.events[0].workflow_execution_started_event_attributes.input
    assert started.payloads[0].metadata["encoding"] == b"binary/encrypted"

    body = json_format.MessageToJson(Payloads(payloads=started.payloads))
    decoded = httpx.post(f"{codec_server}/decode", content=body, timeout=10)
    assert decoded.status_code == 200
    plain = json_format.Parse(decoded.text, Payloads()).payloads[0]
    assert json.loads(plain.data)["notify_email"] == EMAIL

    shown = run_temporal_cli(
        dev_env.client.service_client.config.target_host,
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--output",
        "json",
        "--codec-endpoint",
        codec_server,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    first = json.loads(shown.stdout)["events"][0]["workflowExecutionStartedEventAttributes"]
    data = first["input"]["payloads"][0]["data"]
    assert EMAIL in base64.b64decode(data).decode()  # the CLI decoded it through the server


def test_a_rotated_key_still_reads_what_the_old_key_wrote() -> None:
    old = EncryptionCodec.from_base64(KEY, key_id="2025")
    sealed = old.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b'"x"'))
    new_key = base64.b64encode(os.urandom(32)).decode()
    rotated = EncryptionCodec.from_base64(new_key, key_id="2026", previous_keys=f"2025:{KEY}")
    assert rotated.decrypt(sealed).data == b'"x"'
    assert rotated.encrypt(Payload(data=b"y")).metadata["encryption-key-id"] == b"2026"
    with pytest.raises(ValueError, match="PAYLOAD_PREVIOUS_KEYS"):
        EncryptionCodec.from_base64(new_key, key_id="2026").decrypt(sealed)
    with pytest.raises(ConfigurationError, match="PAYLOAD_PREVIOUS_KEYS"):
        EncryptionCodec.from_base64(new_key, previous_keys="2025")


async def test_failure_messages_are_encrypted_too() -> None:
    """An error can quote personal data (an SMTP server refusing the recipient's address)."""
    converter = data_converter(KEY)
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"recipient {EMAIL} refused"), failure)
    assert EMAIL not in json_format.MessageToJson(failure)
    decoded = await converter.decode_failure(failure)
    assert EMAIL in str(decoded)


def test_the_codec_server_can_require_a_token() -> None:
    token = base64.b64encode(os.urandom(16)).decode()
    server = serve(EncryptionCodec.from_base64(KEY), free_port(), None, token)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/decode"
    body = json_format.MessageToJson(Payloads(payloads=[Payload(data=b"x")]))
    try:
        assert httpx.post(url, content=body, timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(url, content=body, headers=wrong, timeout=10).status_code == 401
        right = {"Authorization": f"Bearer {token}"}
        assert httpx.post(url, content=body, headers=right, timeout=10).status_code == 200
    finally:
        server.shutdown()
        server.server_close()
