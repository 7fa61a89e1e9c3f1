"""Provides the CLI commands of this area (being written)."""

from __future__ import annotations

import argparse

from tuitrain.cli import batch


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands."""
    batch.register(sub)  # `tuitrain run` lives in cli/batch.py (sweep/batch engineer)
