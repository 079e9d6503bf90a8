"""Encrypted workflow payloads (optional): an AES-256-GCM payload codec for inputs, results and
everything else the workflow records, so personal data (notification emails) is ciphertext in
Temporal's database and history. The Web UI and the `temporal` CLI read it through the codec
server (codec_server.py)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from backup.errors import ConfigurationError

ENCODING = b"binary/encrypted"
NONCE_BYTES = 12


class EncryptionCodec(PayloadCodec):
    def __init__(self, key: bytes, key_id: str = "default") -> None:
        if len(key) != 32:
            raise ValueError("PAYLOAD_ENCRYPTION_KEY must be 32 bytes, base64-encoded")
        self._aes = AESGCM(key)
        self.key_id = key_id

    @classmethod
    def from_base64(cls, key: str, key_id: str = "default") -> EncryptionCodec:
        try:
            return cls(base64.b64decode(key, validate=True), key_id)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                "PAYLOAD_ENCRYPTION_KEY must be base64 of 32 random bytes "
                "(python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')"
            ) from None

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aes.encrypt(nonce, payload.SerializeToString(), self.key_id.encode())
        return Payload(
            metadata={"encoding": ENCODING, "encryption-key-id": self.key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was turned on
        key_id = payload.metadata.get("encryption-key-id", b"").decode()
        if key_id != self.key_id:
            raise ValueError(
                f"payload encrypted with key {key_id!r}, this codec has {self.key_id!r}"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        return Payload.FromString(self._aes.decrypt(nonce, sealed, key_id.encode()))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


def data_converter(payload_key: str | None, key_id: str = "default") -> DataConverter:
    """Pydantic JSON payloads, encrypted when a key is configured."""
    if not payload_key:
        return pydantic_data_converter
    codec = EncryptionCodec.from_base64(payload_key, key_id)
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
