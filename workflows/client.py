"""Moved to the client package (client/connection.py). Kept only for worker.py, which another
branch owns; import from `client` instead."""

from client.connection import (
    connect,
    connect_with,
    ensure_search_attributes,
    exit_without_finalizing,
    register_search_attributes,
)

__all__ = [
    "connect",
    "connect_with",
    "ensure_search_attributes",
    "exit_without_finalizing",
    "register_search_attributes",
]
