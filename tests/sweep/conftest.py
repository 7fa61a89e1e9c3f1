"""Provides the sweep tests' fixtures."""

from __future__ import annotations

import pytest

from .helpers import TINY, Cli


@pytest.fixture
def cli(tmp_path):
    """A Cli harness with the tiny base config written as tiny.yaml."""
    c = Cli(tmp_path)
    c.write("tiny.yaml", TINY)
    yield c
    c.kill_all()
