"""The client side of export-backup: connect to Temporal, start the workflows with the right
id policies, follow them, render their results. starter.py is a thin CLI over it (client/cli/);
other programs (devstack, bench, reliability, tests) import from here.

    from client import connect_with, start_export, follow, result_table
"""

from client.connection import (
    connect,
    connect_with,
    ensure_search_attributes,
    exit_without_finalizing,
    register_search_attributes,
)
from client.errors import NotFound, root_cause
from client.progress import FLEET, TRANSFER, follow
from client.render import fleet_table, restore_table, result_table
from client.reports import failure_report
from client.starting import start_export, start_fleet, start_restore, workflow_id_for

__all__ = [
    "FLEET",
    "TRANSFER",
    "NotFound",
    "connect",
    "connect_with",
    "ensure_search_attributes",
    "exit_without_finalizing",
    "failure_report",
    "fleet_table",
    "follow",
    "register_search_attributes",
    "restore_table",
    "result_table",
    "root_cause",
    "start_export",
    "start_fleet",
    "start_restore",
    "workflow_id_for",
]
