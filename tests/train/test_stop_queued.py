"""Stopping a run before its trainer has marked it running ends it as stopped, not failed."""

from __future__ import annotations

import pytest

from tests.train.helpers import TINY, Launcher
from tuitrain.runs.launch import stop

pytestmark = pytest.mark.e2e


def test_stop_right_after_launch_reads_as_stopped(tmp_path):
    lx = Launcher(tmp_path)
    run = lx.start(TINY)
    try:
        with lx.store() as s:
            # The launcher is still importing accelerate: no trainer has marked the run running.
            assert s.get_run(run.id).status == "queued"
        what = stop(run, grace_s=30, runs_dir=lx.runs_dir)
        assert what in ("stopped", "killed")
        lx.wait_exit(run)
        with lx.store() as s:
            got = s.get_run(run.id)
        assert got.status == "stopped", (got.status, got.exit_reason, lx.log(run)[-2000:])
    finally:
        lx.kill_all()
