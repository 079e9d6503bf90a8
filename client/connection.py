"""Connecting to Temporal as the settings describe it, the search attributes the workflows
need, and ending a process that used a client."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from backup.settings import Settings
from client.codec import data_converter
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES


async def connect(
    address: str,
    namespace: str,
    runtime: Runtime | None = None,
    converter: DataConverter = pydantic_data_converter,
) -> Client:
    return await Client.connect(
        address, namespace=namespace, data_converter=converter, runtime=runtime
    )


async def connect_with(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client as the settings describe it, payload encryption included."""
    key = settings.payload_encryption_key
    converter = data_converter(
        key.get_secret_value() if key else None,
        settings.payload_encryption_key_id,
        settings.payload_previous_keys.get_secret_value(),
    )
    return await connect(settings.temporal_address, settings.temporal_namespace, runtime, converter)


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register ProjectId and BackupStep when missing; returns the names it added.

    Without them every workflow task fails in a loop, so the worker calls this at start and
    refuses to run with a clear message when the cluster does not allow it (docs/operations.md)."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in listed.custom_attributes]
    if missing:
        await register_search_attributes(client, missing)
    return missing


async def register_search_attributes(client: Client, names: list[str]) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in names},
        )
    )


def exit_without_finalizing(code: int) -> NoReturn:
    """End a process that used a Temporal client. The SDK's Rust threads can still call into
    Python while the interpreter finalizes, which aborts the process (SIGABRT) or hangs it; so
    flush what is buffered and skip finalization."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
