"""Baseline B's uploader: read a dump from stdin and upload it as one stream, as a peer's
`pg_dump -Fc | aws s3 cp - s3://...` does (boto3's managed transfer of a non-seekable stream).

    pg_dump -Fc ... | python -m bench.stream_upload BUCKET KEY   (S3_ENDPOINT_URL, AWS_* set)
"""

from __future__ import annotations

import os
import sys

import boto3


def main() -> None:
    bucket, key = sys.argv[1], sys.argv[2]
    client = boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL"))
    client.upload_fileobj(sys.stdin.buffer, bucket, key)


if __name__ == "__main__":
    main()
