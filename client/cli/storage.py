"""download, retention and keys: work on stored backups and keys, without Temporal."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from backup.download import download, verify_key_pem
from backup.encryption import decrypt_file
from backup.errors import BackupError, ConfigurationError
from backup.keys import generate_keys
from backup.prune import apply_retention
from backup.settings import Settings
from backup.storage import open_storage
from client.cli.output import fail, say, show_json


async def download_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        verify_key = verify_key_pem(settings, args.verify_key)
    except (BackupError, OSError) as err:
        say(f"download refused: can not read the verify key: {err}")
        return 2
    if verify_key is None and args.require_signature:
        say(
            "download refused: --require-signature, but there is no verify key "
            "(pass --verify-key FILE or set MANIFEST_VERIFY_KEY_FILE)"
        )
        return 2
    try:
        manifest = await download(args.location, args.output, settings, None, args.verify_key)
        if args.identity and manifest.encryption:
            encrypted = args.output.with_name(args.output.name + ".age")
            args.output.replace(encrypted)
            decrypt_file(encrypted, args.output, args.identity)
            encrypted.unlink()
    except (BackupError, OSError) as err:
        fail("download refused", str(err))
        return 1
    signature = (
        f"signature verified with {verify_key[1]}"
        if verify_key
        else "signature NOT checked: no verify key (pass --verify-key or set "
        "MANIFEST_VERIFY_KEY_FILE)"
    )
    say(
        f"{args.output}: {manifest.size_bytes:,} bytes, sha256 {manifest.sha256} verified; "
        f"{signature}; {manifest.format} / {manifest.compression} of schema "
        f"{manifest.schema_name} ({manifest.table_count} tables)"
    )
    return 0


async def retention(args: argparse.Namespace, settings: Settings) -> int:
    """Apply (or with --dry-run, plan) the project's retention policy now (docs/storage.md)."""
    try:
        policy = settings.retention_policy_for(args.project)
    except ConfigurationError as err:
        fail("configuration error", str(err))
        return 2
    outcome = await apply_retention(open_storage(settings), args.project, policy, args.dry_run)
    show_json(outcome)
    return 1 if outcome.errors else 0


async def keys(args: argparse.Namespace, settings: Settings) -> int:
    """Keys for a new deployment (see backup.keys)."""
    try:
        made = generate_keys(args.out)
    except ConfigurationError as err:
        fail("keys", str(err))
        return 1
    print(
        f"workers:  ENCRYPTION_RECIPIENTS={made.recipient}\n"
        f"          MANIFEST_SIGNING_KEY_FILE={made.signing_key_file}\n"
        f"restore:  MANIFEST_VERIFY_KEY_FILE={made.verify_key_file}\n"
        f"          starter.py download LOCATION -o FILE --identity {made.identity_file}\n"
        f"Keep {made.identity_file.name} off the workers: it reads every backup encrypted to "
        f"{made.recipient}."
    )
    return 0


def add(sub: Any) -> None:
    p = sub.add_parser(
        "download", help="fetch a backup by location, verify its signature and SHA-256"
    )
    p.set_defaults(run=download_command)
    p.add_argument("location", help="file://, s3:// or telegram:// location from a result")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument(
        "--verify-key",
        type=Path,
        help="Ed25519 public key (PEM) the manifest must be signed with; overrides "
        "MANIFEST_VERIFY_KEY_FILE",
    )
    p.add_argument(
        "--require-signature",
        action="store_true",
        help="refuse (exit 2) when no verify key is given or configured",
    )
    p.add_argument("--identity", type=Path, help="age identity file: decrypt after verifying")

    p = sub.add_parser("retention", help="prune a project's old backups by its policy")
    p.set_defaults(run=retention)
    p.add_argument("action", choices=["apply"])
    p.add_argument("--project", required=True)
    p.add_argument("--dry-run", action="store_true", help="list what would be pruned")

    p = sub.add_parser("keys", help="generate encryption and signing keys for a deployment")
    p.set_defaults(run=keys)
    p.add_argument("--out", type=Path, required=True, help="directory for the key files")
