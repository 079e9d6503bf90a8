"""Which S3 requests skip botocore's payload SHA-256 (backup/storage/s3_client.py): only uploads
whose body SHA-256 travels in a signed header the store verifies; everything else is signed as
botocore decides, over plain http with its payload hash."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from backup.storage.s3_client import CLIENT_CONFIG, _payload_signing

BODY = b"part bytes" * 1000
SHA256 = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
MD5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()
# A client's config as botocore hands it to the signer: ours plus what it resolved itself.
RESOLVED = CLIENT_CONFIG.merge(Config(s3={"addressing_style": "path"}))


def signed(operation: str, headers: dict[str, str], url: str = "http://s3.test/b/k") -> AWSRequest:
    request = AWSRequest(method="PUT", url=url, data=BODY, headers=headers)
    request.context.update(client_config=RESOLVED, has_streaming_input=True)
    _payload_signing(request=request, operation_name=operation)
    S3SigV4Auth(Credentials("AKID", "secret"), "s3", "us-east-1").add_auth(request)
    return request


@pytest.mark.parametrize("operation", ["UploadPart", "PutObject"])
def test_an_upload_with_its_sha256_in_a_signed_header_is_not_hashed_again(operation: str) -> None:
    request = signed(operation, {"Content-MD5": MD5, "x-amz-checksum-sha256": SHA256})
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    # What binds the body to the signature instead: the store checks the body against these.
    signed_headers = str(request.headers["Authorization"]).split("SignedHeaders=")[1]
    assert "x-amz-checksum-sha256" in signed_headers and "content-md5" in signed_headers
    config = request.context["client_config"]  # the rest of the client's config is kept
    assert config.s3["addressing_style"] == "path" and config.read_timeout == RESOLVED.read_timeout


@pytest.mark.parametrize(
    ("operation", "headers"),
    [
        ("UploadPart", {"Content-MD5": MD5}),  # S3_CHECKSUMS=false: MD5 alone
        ("PutObject", {}),  # the manifest and its signature
        ("CompleteMultipartUpload", {"x-amz-checksum-sha256": SHA256}),
        ("DeleteObjects", {"Content-MD5": MD5}),
    ],
)
def test_every_other_request_over_http_keeps_its_payload_signed(
    operation: str, headers: dict[str, str]
) -> None:
    request = signed(operation, headers)
    assert request.headers["X-Amz-Content-SHA256"] == hashlib.sha256(BODY).hexdigest()
