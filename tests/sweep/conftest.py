"""Provides the sweep tests' fixtures: a CLI harness per test, and promo_sweep's real 1-trial
sweep run once per session (tests take a copy with helpers.promo_copy)."""

from __future__ import annotations

import pytest

from .helpers import TINY, Cli, promo_sweep


@pytest.fixture
def cli(tmp_path):
    """A Cli harness with the tiny base config written as tiny.yaml."""
    c = Cli(tmp_path)
    c.write("tiny.yaml", TINY)
    yield c
    c.kill_all()


@pytest.fixture(scope="session")
def promo_trained(tmp_path_factory):
    """The folder of one real promo_sweep (6-step trial, checkpoints at 3 and 6), run once per
    session with every process ended; copy it with promo_copy(cli, promo_trained)."""
    folder = tmp_path_factory.mktemp("promo-trained")
    c = Cli(folder)
    try:
        c.write("tiny.yaml", TINY)
        promo_sweep(c)
    finally:
        c.kill_all()
    return folder
