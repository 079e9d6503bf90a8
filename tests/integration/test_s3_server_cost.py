"""bench.s3_server_cost reads SeaweedFS's own CPU profile: the parser finds the functions weed
spent an upload in (MD5 is always among them: weed hashes every part it receives)."""

from __future__ import annotations

import re

import pytest

from bench import s3_server_cost


def test_the_store_cost_and_its_profile_are_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert s3_server_cost.main(["--mib", "16", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    row = re.search(r"^\| 1 \| [\d.]+ \| ([\d.]+) \|", out, re.M)
    assert row is not None and float(row.group(1)) > 0
    md5 = re.search(r"MD5 (\d+)% of it", out)
    assert md5 is not None and int(md5.group(1)) > 0
    assert "crypto/md5.block" in out
