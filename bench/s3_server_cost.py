"""What the bench's S3 server costs the cores it shares with the dump: SeaweedFS (`weed mini`)
receives an artifact-sized upload in 16 MiB parts, as a 1 GB dump sends it, and reports its own
CPU seconds and, from its own Go CPU profile (`-cpuprofile`), where they went.

    .venv/bin/python -m bench.s3_server_cost [--mib 165] [--runs 3]

On the bench box every CPU second of the store is taken from PostgreSQL, pg_dump and the
worker: this is the part of "ours → s3" a deployment whose store runs elsewhere does not pay.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.stack_cpu import tree_seconds
from devstack.seaweed import SeaweedS3

PART = 16 * 1024 * 1024


def upload(s3: Any, bucket: str, key: str, data: bytes, parts: int) -> None:
    """`parts` times `data` as one multipart upload (botocore client `s3`)."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    sent = []
    for number in range(1, parts + 1):
        answer = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        sent.append({"ETag": answer["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": sent}
    )


# A pprof profile is a gzipped protocol buffer (github.com/google/pprof, profile.proto); these
# few fields are all a flat profile needs, so no protobuf schema is pulled in for them.
def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at : at + length], at + length
        elif wire == 1:
            value, at = data[at : at + 8], at + 8
        elif wire == 5:
            value, at = data[at : at + 4], at + 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        yield number, wire, value


def _ints(value: int | bytes) -> list[int]:
    """A repeated integer field's values: one varint, or a packed run of them."""
    if isinstance(value, int):
        return [value]
    out, at = [], 0
    while at < len(value):
        item, at = _varint(value, at)
        out.append(item)
    return out


def flat_profile(path: Path) -> tuple[float, collections.Counter[str]]:
    """Seconds sampled, and nanoseconds by the function each sample was in."""
    strings: list[str] = []
    samples: list[tuple[list[int], int]] = []
    location_function: dict[int, int] = {}
    function_name: dict[int, int] = {}
    for number, _, value in _fields(gzip.decompress(path.read_bytes())):
        if number == 6 and isinstance(value, bytes):  # string_table
            strings.append(value.decode())
        elif number == 2 and isinstance(value, bytes):  # sample: location ids, values
            ids: list[int] = []
            values: list[int] = []
            for field, _, v in _fields(value):
                if field == 1:
                    ids += _ints(v)
                elif field == 2:
                    values += _ints(v)
            samples.append((ids, values[-1]))  # the last value: CPU nanoseconds
        elif number == 4 and isinstance(value, bytes):  # location: id, lines (function id)
            location = list(_fields(value))
            lid = next(v for f, _, v in location if f == 1)
            lines = [v for f, _, v in location if f == 4]
            if lines and isinstance(lines[0], bytes) and isinstance(lid, int):
                fid = next(v for f, _, v in _fields(lines[0]) if f == 1)
                location_function[lid] = int(fid)  # the innermost (inlined) function
        elif number == 5 and isinstance(value, bytes):  # function: id, name
            function = {f: v for f, _, v in _fields(value)}
            fid, name_index = function[1], function.get(2, 0)
            assert isinstance(fid, int) and isinstance(name_index, int)
            function_name[fid] = name_index
    flat: collections.Counter[str] = collections.Counter()
    for ids, nanoseconds in samples:
        leaf = location_function.get(ids[0]) if ids else None
        flat[strings[function_name[leaf]] if leaf in function_name else "?"] += nanoseconds
    return sum(flat.values()) / 1e9, flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=165, help="upload size, MiB (a 1 GB dump)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    parts = max(1, args.mib * 1024 * 1024 // PART)
    home = Path(tempfile.mkdtemp(prefix="s3-cost-"))
    profile = home / "weed.cpu.pprof"
    store = SeaweedS3(home / "s3", extra_flags=(f"-cpuprofile={profile}",))
    data = os.urandom(PART)  # compressed artifacts do not compress further
    try:
        store.start()
        assert store.pid is not None
        weed = store.pid
        client = store.client()
        upload(client, store.bucket, "warm-up", data, 1)
        print(f"{parts} parts of 16 MiB ({parts * PART / 1e6:.0f} MB) per upload, to weed mini")
        print("| run | wall s | weed CPU s | weed CPU s per 100 MB |\n|---:|---:|---:|---:|")
        for run in range(1, args.runs + 1):
            cpu, started = tree_seconds(weed), time.perf_counter()
            upload(client, store.bucket, f"run-{run}", data, parts)
            wall, used = time.perf_counter() - started, tree_seconds(weed) - cpu
            per_100 = used / (parts * PART / 1e8)
            print(f"| {run} | {wall:.2f} | {used:.2f} | {per_100:.2f} |", flush=True)
        client.close()
    finally:
        store.stop()  # weed writes its CPU profile as it stops
    try:
        seconds, flat = flat_profile(profile)
        total = sum(flat.values()) or 1
        md5 = sum(ns for name, ns in flat.items() if name.startswith("crypto/md5."))
        print(
            f"\nweed's own profile ({seconds:.1f} s sampled, warm-up included): MD5 "
            f"{md5 / total:.0%} of it. Top functions:"
        )
        for name, ns in flat.most_common(8):
            print(f"  {ns / total:6.1%}  {name}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
