"""The dev stack's SeaweedFS is a real S3 store: signed requests only, multipart as on AWS,
the secret key kept out of argv, and nothing left running after stop()."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aioboto3
import httpx
import pytest
from aiobotocore.config import AioConfig
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from devstack.ports import free_port
from devstack.seaweed import SeaweedS3

log = logging.getLogger(__name__)
MIB = 1024 * 1024
PART = 5 * MIB


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("s3") / "data") as running:
        yield running


@asynccontextmanager
async def s3_client(store: SeaweedS3, **overrides: Any) -> AsyncIterator[Any]:
    options: dict[str, Any] = {
        "endpoint_url": store.endpoint_url,
        "aws_access_key_id": store.access_key,
        "aws_secret_access_key": store.secret_key,
        "region_name": "us-east-1",
        **overrides,
    }
    async with aioboto3.Session().client("s3", **options) as client:
        yield client


async def upload_parts(
    s3: Any, bucket: str, key: str, upload_id: str, parts: list[bytes], **options: Any
) -> list[dict[str, Any]]:
    """upload_part of each of `parts` in order (numbered from 1): the responses."""
    return [
        await s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data, **options
        )
        for n, data in enumerate(parts, start=1)
    ]


def error_code(err: ClientError) -> tuple[str, int]:
    return err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]


def weed_processes(data_dir: Path) -> list[int]:
    """Pids whose command line names `data_dir` (our weed, not another test's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if f"-dir={data_dir}".encode() in cmdline:
                found.append(int(proc.name))
    return found


def test_env_describes_the_store(store: SeaweedS3) -> None:
    assert store.env() == {
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{store.port}",
        "S3_BUCKET": "backups",
        "AWS_ACCESS_KEY_ID": store.access_key,
        "AWS_SECRET_ACCESS_KEY": store.secret_key,
        "AWS_REGION": "us-east-1",
    }
    assert len(store.secret_key) >= 32


async def test_put_get_and_metadata_round_trip(store: SeaweedS3) -> None:
    body = b"hello, seaweed\n" * 100
    digest = hashlib.sha256(body).hexdigest()
    async with s3_client(store) as s3:
        put = await s3.put_object(
            Bucket=store.bucket, Key="small/a.txt", Body=body, Metadata={"sha256": digest}
        )
        got = await s3.get_object(Bucket=store.bucket, Key="small/a.txt")
        assert await got["Body"].read() == body
        head = await s3.head_object(Bucket=store.bucket, Key="small/a.txt")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert head["ContentLength"] == len(body)
    assert head["Metadata"] == {"sha256": digest}


async def test_multipart_upload_of_three_5mib_parts(store: SeaweedS3) -> None:
    parts = [bytes([n]) * PART for n in (1, 2, 3)]
    key = "multi/three-parts.bin"
    async with s3_client(store) as s3:
        upload = await s3.create_multipart_upload(Bucket=store.bucket, Key=key)
        sent = await upload_parts(s3, store.bucket, key, upload["UploadId"], parts)
        for part, data in zip(sent, parts, strict=True):
            assert part["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        done = [{"ETag": p["ETag"], "PartNumber": n} for n, p in enumerate(sent, start=1)]
        listed = await s3.list_parts(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"])
        assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [
            (1, PART),
            (2, PART),
            (3, PART),
        ]
        complete = await s3.complete_multipart_upload(
            Bucket=store.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": done},
        )
        got = await s3.get_object(Bucket=store.bucket, Key=key)
        assert await got["Body"].read() == b"".join(parts)
    md5s = b"".join(hashlib.md5(data).digest() for data in parts)
    assert complete["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'


async def test_multipart_minimum_part_size_is_enforced(store: SeaweedS3) -> None:
    key = "multi/too-small.bin"
    async with s3_client(store) as s3:
        upload = await s3.create_multipart_upload(Bucket=store.bucket, Key=key)
        done = []
        for number in (1, 2):
            part = await s3.upload_part(
                Bucket=store.bucket,
                Key=key,
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=b"x" * 1024,
            )
            done.append({"ETag": part["ETag"], "PartNumber": number})
        with pytest.raises(ClientError) as raised:
            await s3.complete_multipart_upload(
                Bucket=store.bucket,
                Key=key,
                UploadId=upload["UploadId"],
                MultipartUpload={"Parts": done},
            )
        assert error_code(raised.value) == ("EntityTooSmall", 400)
        await s3.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"])


async def test_list_and_abort_multipart_uploads(store: SeaweedS3) -> None:
    key = "abort/me.bin"
    async with s3_client(store) as s3:
        upload = await s3.create_multipart_upload(Bucket=store.bucket, Key=key)
        upload_id = upload["UploadId"]
        await s3.upload_part(
            Bucket=store.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"y" * 100
        )
        listed = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix="abort/")
        assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == [(key, upload_id)]
        other = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix="elsewhere/")
        assert other.get("Uploads", []) == []
        await s3.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload_id)
        listed = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix="abort/")
        assert listed.get("Uploads", []) == []
        with pytest.raises(ClientError) as raised:
            await s3.list_parts(Bucket=store.bucket, Key=key, UploadId=upload_id)
        assert error_code(raised.value) == ("NoSuchUpload", 404)


def report(findings: dict[str, object]) -> None:
    for name, value in findings.items():
        log.info("SeaweedFS checksum support: %s: %s", name, value)


async def test_checksums_on_put_object_are_reported(store: SeaweedS3) -> None:
    """Not a requirement: logs what SeaweedFS does with S3's additional SHA-256 checksum."""
    findings: dict[str, object] = {}
    body = b"checksummed" * 1000
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    async with s3_client(store) as s3:
        try:
            put = await s3.put_object(
                Bucket=store.bucket, Key="sum/put.bin", Body=body, ChecksumAlgorithm="SHA256"
            )
            findings["put_object returns ChecksumSHA256"] = put.get("ChecksumSHA256") == expected
            head = await s3.head_object(
                Bucket=store.bucket, Key="sum/put.bin", ChecksumMode="ENABLED"
            )
            findings["head_object returns it"] = head.get("ChecksumSHA256") == expected
        except ClientError as err:
            findings["put_object with ChecksumAlgorithm"] = error_code(err)
    # botocore retries BadDigest 4 times, and each answer takes SeaweedFS about a second.
    async with s3_client(store, config=AioConfig(retries={"max_attempts": 1})) as s3:
        try:
            await s3.put_object(
                Bucket=store.bucket,
                Key="sum/bad.bin",
                Body=body,
                ChecksumSHA256=base64.b64encode(b"\0" * 32).decode(),
            )
            findings["wrong ChecksumSHA256 on put"] = "accepted"
        except ClientError as err:
            findings["wrong ChecksumSHA256 on put"] = error_code(err)
    report(findings)


async def test_checksums_on_multipart_upload_are_reported(store: SeaweedS3) -> None:
    """Not a requirement: logs what SeaweedFS does with SHA-256 checksums on parts."""
    findings: dict[str, object] = {}
    key = "sum/multi.bin"
    parts = [bytes([n]) * PART for n in (7, 8, 9)]
    digests = b"".join(hashlib.sha256(data).digest() for data in parts)
    composite = base64.b64encode(hashlib.sha256(digests).digest()).decode() + "-3"
    async with s3_client(store) as s3:
        upload = await s3.create_multipart_upload(
            Bucket=store.bucket, Key=key, ChecksumAlgorithm="SHA256"
        )
        sent = await upload_parts(
            s3, store.bucket, key, upload["UploadId"], parts, ChecksumAlgorithm="SHA256"
        )
        done = []
        for number, part in enumerate(sent, start=1):
            entry = {"ETag": part["ETag"], "PartNumber": number}
            if "ChecksumSHA256" in part:
                entry["ChecksumSHA256"] = part["ChecksumSHA256"]
            done.append(entry)
        findings["upload_part returns ChecksumSHA256"] = all("ChecksumSHA256" in p for p in done)
        listed = await s3.list_parts(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"])
        findings["list_parts returns ChecksumSHA256"] = all(
            "ChecksumSHA256" in p for p in listed["Parts"]
        )
        try:
            complete = await s3.complete_multipart_upload(
                Bucket=store.bucket,
                Key=key,
                UploadId=upload["UploadId"],
                MultipartUpload={"Parts": done},
                ChecksumSHA256=composite,
            )
        except ClientError as err:
            findings["complete with ChecksumSHA256"] = error_code(err)
            await s3.abort_multipart_upload(
                Bucket=store.bucket, Key=key, UploadId=upload["UploadId"]
            )
        else:
            findings["complete returns the composite"] = complete.get("ChecksumSHA256")
            head = await s3.head_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
            findings["head_object returns it"] = head.get("ChecksumSHA256")
            findings["expected composite"] = composite
            got = await s3.get_object(Bucket=store.bucket, Key=key)
            assert await got["Body"].read() == b"".join(parts)  # the data must be right anyway
    report(findings)


async def test_wrong_credentials_are_rejected(store: SeaweedS3) -> None:
    async with s3_client(store, aws_secret_access_key=store.secret_key + "x") as s3:
        with pytest.raises(ClientError) as raised:
            await s3.list_objects_v2(Bucket=store.bucket)
    assert error_code(raised.value) == ("SignatureDoesNotMatch", 403)
    async with s3_client(store, aws_access_key_id="EBNOTAKNOWNKEY000000") as s3:
        with pytest.raises(ClientError) as raised:
            await s3.put_object(Bucket=store.bucket, Key="nope", Body=b"x")
    assert error_code(raised.value) == ("InvalidAccessKeyId", 403)


async def test_anonymous_requests_are_refused(store: SeaweedS3) -> None:
    async with s3_client(store, config=AioConfig(signature_version=UNSIGNED)) as s3:
        for call in (
            s3.list_objects_v2(Bucket=store.bucket),
            s3.get_object(Bucket=store.bucket, Key="small/a.txt"),
            s3.put_object(Bucket=store.bucket, Key="anonymous", Body=b"x"),
        ):
            with pytest.raises(ClientError) as raised:
                await call
            assert error_code(raised.value)[1] == 403
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{store.endpoint_url}/{store.bucket}/small/a.txt")
    assert response.status_code == 403


async def test_missing_bucket_is_no_such_bucket(store: SeaweedS3) -> None:
    async with s3_client(store) as s3:
        for call in (
            s3.list_objects_v2(Bucket="no-such-bucket"),
            # Not auto-created, so a mistyped S3_BUCKET fails instead of making a new bucket.
            s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x"),
        ):
            with pytest.raises(ClientError) as raised:
                await call
            assert error_code(raised.value) == ("NoSuchBucket", 404)
        names = [b["Name"] for b in (await s3.list_buckets())["Buckets"]]
    assert names == ["backups"]


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_secret_key_is_in_no_command_line_or_environment(store: SeaweedS3) -> None:
    secret = store.secret_key.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        assert secret not in cmdline, cmdline
    assert store.pid in weed_processes(store.data_dir)  # the scan did see our weed
    assert secret not in Path(f"/proc/{store.pid}/environ").read_bytes()
    assert stat.S_IMODE(store.config_file.stat().st_mode) == 0o600
    assert secret not in store.log_file.read_bytes()


def test_all_ports_are_on_loopback(store: SeaweedS3) -> None:
    for flag, port in store.ports.items():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == 0, flag
    listeners: dict[int, str] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":  # LISTEN
            listeners[int(local.split(":")[1], 16)] = local.split(":")[0]
    admin_grpc = store.ports["admin.port"] + 10_000
    for port in [*store.ports.values(), admin_grpc]:
        assert listeners[port] == "0100007F", port  # 127.0.0.1, not 0.0.0.0


async def test_restart_keeps_credentials_ports_and_data(tmp_path: Path) -> None:
    """A second instance next to the module's one: separate ports, and a restart reuses them."""
    first = SeaweedS3(tmp_path / "data", bucket="other")
    first.start()
    try:
        async with s3_client(first) as s3:
            await s3.put_object(Bucket="other", Key="kept", Body=b"still here")
    finally:
        first.stop()
    assert weed_processes(first.data_dir) == []

    again = SeaweedS3(tmp_path / "data", bucket="other")
    assert (again.access_key, again.secret_key) == (first.access_key, first.secret_key)
    with again:
        assert again.ports == first.ports
        async with s3_client(again) as s3:
            got = await s3.get_object(Bucket="other", Key="kept")
            assert await got["Body"].read() == b"still here"
        pid = again.pid
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert weed_processes(again.data_dir) == []


def test_a_port_lost_to_a_race_is_picked_again(tmp_path: Path) -> None:
    s3_port = free_port()
    store = SeaweedS3(tmp_path / "data", port=s3_port)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        store.ports["filer.port"] = squatter.getsockname()[1]
        with store:
            assert store.port == s3_port  # the requested port is kept
            assert store.ports["filer.port"] != squatter.getsockname()[1]
    assert weed_processes(store.data_dir) == []


def test_requested_port_in_use_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        store = SeaweedS3(tmp_path / "data", port=squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="already in use"):
            store.start()
    assert os.listdir(tmp_path) in ([], ["data.s3.json"])
