"""Provides the trainer tests' fixtures."""

from __future__ import annotations

import pytest

from .helpers import Launcher


@pytest.fixture
def launcher(tmp_path):
    """A Launcher whose process groups are killed at teardown, pass or fail."""
    lx = Launcher(tmp_path)
    yield lx
    lx.kill_all()
