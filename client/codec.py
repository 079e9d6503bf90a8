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
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from backup.errors import ConfigurationError

ENCODING = b"binary/encrypted"
NONCE_BYTES = 12


class EncryptionCodec(PayloadCodec):
    """Encrypts with the current key; decrypts with it or with a previous key of another id, so
    workflows started before a key rotation keep running (docs/security.md "Rotation")."""

    def __init__(
        self, key: bytes, key_id: str = "default", previous: dict[str, bytes] | None = None
    ) -> None:
        for secret in [key, *(previous or {}).values()]:
            if len(secret) != 32:
                raise ValueError("payload encryption keys must be 32 bytes, base64-encoded")
        self._aes = AESGCM(key)
        self.key_id = key_id
        self._decrypting = {kid: AESGCM(old) for kid, old in (previous or {}).items()}
        self._decrypting[key_id] = self._aes

    @classmethod
    def from_base64(
        cls, key: str, key_id: str = "default", previous_keys: str = ""
    ) -> EncryptionCodec:
        """`previous_keys`: PAYLOAD_PREVIOUS_KEYS, comma-separated `key_id:base64key` pairs."""
        try:
            previous = {}
            for entry in filter(None, (e.strip() for e in previous_keys.split(","))):
                kid, _, old = entry.partition(":")
                if not kid or not old:
                    raise ValueError(entry)
                previous[kid] = base64.b64decode(old, validate=True)
            return cls(base64.b64decode(key, validate=True), key_id, previous)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                "PAYLOAD_ENCRYPTION_KEY must be base64 of 32 random bytes "
                "(python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'), "
                "and PAYLOAD_PREVIOUS_KEYS comma-separated key_id:base64 pairs of such keys"
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
        aes = self._decrypting.get(key_id)
        if aes is None:
            raise ValueError(
                f"payload encrypted with key {key_id!r}; this codec has {sorted(self._decrypting)}"
                ": add that key to PAYLOAD_PREVIOUS_KEYS"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        return Payload.FromString(aes.decrypt(nonce, sealed, key_id.encode()))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


def data_converter(
    payload_key: str | None, key_id: str = "default", previous_keys: str = ""
) -> DataConverter:
    """Pydantic JSON payloads, encrypted when a key is configured. Failure messages and stack
    traces are encrypted too: an error can quote personal data (a refused recipient address)."""
    if not payload_key:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec.from_base64(payload_key, key_id, previous_keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
