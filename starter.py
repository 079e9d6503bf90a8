"""Start, follow and list backups: a thin command line over the client package (client/).

python starter.py export --project acme [--format custom] [--compression zstd] [--follow] [--json]
python starter.py fleet [--max-concurrent 4] [--follow]     # every ACTIVE project now
python starter.py follow WORKFLOW_ID                        # a running backup, restore or fleet
python starter.py status WORKFLOW_ID [--json]
python starter.py list [--project acme] [--json]
python starter.py restore LOCATION --into SCHEMA | --replace --confirm-replace [--follow] [--json]
python starter.py download LOCATION -o FILE [--verify-key PUB.pem] [--require-signature]
python starter.py retention apply --project acme [--dry-run]
python starter.py keys --out DIR
python starter.py schedule create --project acme --cron "0 2 * * *" --timezone Europe/Berlin
python starter.py schedule update ID|--project acme|--all [--cron ...] [--verify-restore] ...
python starter.py schedule list [--json] | describe | pause | unpause | trigger | delete ID
"""

import asyncio

from client.cli.main import main
from client.connection import exit_without_finalizing

if __name__ == "__main__":
    exit_without_finalizing(asyncio.run(main()))
