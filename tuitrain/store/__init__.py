"""Provides the run store: one SQLite (WAL) database per runs directory for runs, metrics, events and commands."""

from tuitrain.store.db import DB_NAME, SCHEMA_VERSION, network_fs_warning
from tuitrain.store.models import (
    ACTIVE_STATUSES,
    COMMAND_KINDS,
    STATUSES,
    TERMINAL_STATUSES,
    Command,
    CommandRefused,
    Event,
    InvalidValue,
    MetricPoint,
    RunInfo,
    RunNotFound,
    Sample,
    StoreError,
)
from tuitrain.store.store import NetworkFilesystemWarning, Store
from tuitrain.store.writer import RunWriter

__all__ = [
    "ACTIVE_STATUSES",
    "COMMAND_KINDS",
    "DB_NAME",
    "SCHEMA_VERSION",
    "STATUSES",
    "TERMINAL_STATUSES",
    "Command",
    "CommandRefused",
    "Event",
    "InvalidValue",
    "MetricPoint",
    "NetworkFilesystemWarning",
    "RunInfo",
    "RunNotFound",
    "RunWriter",
    "Sample",
    "Store",
    "StoreError",
    "network_fs_warning",
]
