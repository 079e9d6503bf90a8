"""Email against a real SMTP server (aiosmtpd) over STARTTLS and over implicit TLS, with a login,
and the certificate verified. The settings offer no option to trust a CA or skip verification,
so the test's CA is trusted the way a deployment would: SSL_CERT_FILE, which the default SSL
context that aiosmtplib builds reads."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backup.errors import NotificationFailed
from backup.notify import open_channel
from backup.settings import Settings
from devstack.ports import free_port
from tests.notifications import LINK, succeeded

USERNAME, PASSWORD = "backups", "tls-smtp-password"


@dataclass
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throwaway CA and a server certificate it signed, for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("export-backup test CA"))
        .issuer_name(_name("export-backup test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass
class TLSMailbox:
    messages: list[Message] = field(default_factory=list)
    tls_versions: list[str | None] = field(default_factory=list)  # of the connection per message
    logins: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.tls_versions.append(ssl_object.version() if ssl_object else None)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (USERNAME.encode(), PASSWORD.encode())
        if ok:
            self.logins.append(data.login)
        return AuthResult(success=ok)


@contextmanager
def tls_smtp_server(files: TLSFiles, *, implicit: bool) -> Iterator[tuple[int, TLSMailbox]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    mailbox = TLSMailbox()
    tls: dict[str, Any] = (
        # Implicit TLS: all of the connection; aiosmtpd can not tell, so no auth_require_tls.
        {"ssl_context": context, "auth_require_tls": False}
        if implicit
        # STARTTLS: plain until upgraded; AUTH and MAIL are refused before the upgrade.
        else {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    )
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=mailbox.authenticate,
        auth_required=True,
        **tls,
    )
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def tls_settings(port: int, *, implicit: bool) -> Settings:
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=not implicit,
        smtp_tls=implicit,
        smtp_username=USERNAME,
        smtp_password=PASSWORD,  # type: ignore[arg-type]
        smtp_from="backups@platform.example",
        smtp_timeout_seconds=10,
    )


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
async def test_email_over_tls_with_login_and_a_verified_certificate(
    tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch, implicit: bool
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca))
    with tls_smtp_server(tls_files, implicit=implicit) as (port, mailbox):
        await open_channel("email", tls_settings(port, implicit=implicit)).send(succeeded(), LINK)
    [message] = mailbox.messages
    assert message["Subject"] == "Backup of acme succeeded (2.3 MB)"
    assert message["To"] == "owner@example.com"
    assert mailbox.logins == [USERNAME.encode()]
    [version] = mailbox.tls_versions
    assert version and version.startswith("TLSv1."), "the message travelled over TLS"


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
async def test_an_untrusted_certificate_is_refused_before_the_login(
    tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, implicit: bool
) -> None:
    """Verification is on: with only an unrelated CA trusted, nothing is sent, no password."""
    other_ca = tmp_path / "empty-ca.pem"
    other_ca.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    with tls_smtp_server(tls_files, implicit=implicit) as (port, mailbox):
        channel = open_channel("email", tls_settings(port, implicit=implicit))
        with pytest.raises(NotificationFailed) as caught:
            await channel.send(succeeded(), LINK)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert mailbox.logins == [] and mailbox.messages == []
