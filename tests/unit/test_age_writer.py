"""The age v1 writer (backup.age_writer): what it writes decrypts with pyrage (rage, an
independent implementation) for every chunk boundary and recipient count, and only with the
right identity and untouched bytes."""

from __future__ import annotations

import io
import os
import random

import pyrage
import pytest

from backup.age_writer import CHUNK, AgeWriter, x25519_recipient


def encrypt(data: bytes, identities: list[pyrage.x25519.Identity], seed: int = 1) -> bytes:
    out = io.BytesIO()
    writer = AgeWriter(out, [x25519_recipient(str(i.to_public())) for i in identities])
    rng, at = random.Random(seed), 0
    while at < len(data):  # uneven writes, across chunk boundaries and within them
        n = rng.choice([1, 7, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK])
        writer.write(data[at : at + n])
        at += n
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17, 10 * CHUNK + 5]
)
def test_pyrage_decrypts_what_it_writes(size: int) -> None:
    identity = pyrage.x25519.Identity.generate()
    data = os.urandom(size)
    encrypted = encrypt(data, [identity], seed=size)
    assert encrypted.startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert pyrage.decrypt(encrypted, [identity]) == data
    # age's overhead: the header, a 16-byte nonce and a 16-byte tag per 64 KiB chunk
    chunks = max(1, -(-size // CHUNK))
    header = encrypted.index(b"\n", encrypted.index(b"\n---") + 1) + 1
    assert len(encrypted) == header + 16 + size + 16 * chunks


def test_every_recipient_decrypts_and_no_one_else() -> None:
    first, second, stranger = (pyrage.x25519.Identity.generate() for _ in range(3))
    data = os.urandom(2 * CHUNK + 3)
    encrypted = encrypt(data, [first, second])
    assert encrypted.count(b"\n-> X25519 ") == 2
    assert pyrage.decrypt(encrypted, [first]) == pyrage.decrypt(encrypted, [second]) == data
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(encrypted, [stranger])


@pytest.mark.parametrize("where", ["header", "payload", "last byte"])
def test_a_changed_byte_does_not_decrypt(where: str) -> None:
    identity = pyrage.x25519.Identity.generate()
    encrypted = bytearray(encrypt(os.urandom(CHUNK + 100), [identity]))
    at = {"header": 30, "payload": len(encrypted) // 2, "last byte": len(encrypted) - 1}[where]
    encrypted[at] ^= 0x01
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(bytes(encrypted), [identity])


def test_a_truncated_file_does_not_decrypt() -> None:
    """The final-chunk flag: a file cut at a chunk boundary is refused, not taken as whole."""
    identity = pyrage.x25519.Identity.generate()
    encrypted = encrypt(os.urandom(2 * CHUNK + 10), [identity])
    cut = len(encrypted) - (10 + 16)  # without the last chunk
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(encrypted[:cut], [identity])


def test_recipients_are_decoded_from_bech32_and_bad_ones_refused() -> None:
    key = str(pyrage.x25519.Identity.generate().to_public())
    assert len(x25519_recipient(key).public_bytes_raw()) == 32
    assert (
        x25519_recipient(key.upper()).public_bytes_raw() == x25519_recipient(key).public_bytes_raw()
    )
    flipped = key[:-1] + ("q" if key[-1] != "q" else "p")
    for bad in [flipped, "age1notakey", key.replace("age1", "agf1"), key[:-6], ""]:
        with pytest.raises(ValueError):
            x25519_recipient(bad)
