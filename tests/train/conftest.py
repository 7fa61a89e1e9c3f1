"""Provides the trainer tests' fixtures: a launcher per test, and the TINY run trained once per
session for the tests that only read what a finished run stored (each gets its own copy)."""

from __future__ import annotations

import pytest

from .helpers import TINY, Launcher, Trained, train_once


@pytest.fixture
def launcher(tmp_path):
    """A Launcher whose process groups are killed at teardown, pass or fail."""
    lx = Launcher(tmp_path)
    yield lx
    lx.kill_all()


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory) -> Trained:
    """The TINY demo run (30 steps), trained to completion once per session; tests take a
    copy with `launcher.adopt(tiny_trained)`."""
    return train_once(tmp_path_factory.mktemp("tiny-trained"), TINY)
