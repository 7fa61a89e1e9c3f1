"""`tuitrain sweep promote`: a real 6-step trial with checkpoints is continued as a 12-step run
branched from its last checkpoint (parent = the trial, fork_step = that step, the trial's params,
the base config's length); clear errors for a missing sweep or trial, and a trial without a
checkpoint."""

from __future__ import annotations

import pytest

from tuitrain.store import Store

from .helpers import build_sweep, promo_copy, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_promote_best_trial_branches_full_length_run(cli, promo_trained):
    rec = promo_copy(cli, promo_trained)  # promo_sweep(cli), run once per session
    best = rec.best()
    rc, out = cli.run("sweep", "promote", rec.name, "--runs-dir", "runs", timeout=120)
    assert rc == 0, out
    child_id = out.splitlines()[0].strip()
    with Store(cli.runs_dir) as s:
        child = s.get_run(child_id)
        assert child.parent == best.run_id and child.fork_step == 6
        assert child.config["optimizer"]["lr"] == best.params["optimizer.lr"]
        assert child.config["training"]["max_steps"] == 12 and child.sweep_id is None
        end = wait_for(
            lambda: (r := s.get_run(child_id)).terminal and r, 300, "the promoted run to end"
        )
        assert end.status == "completed", cli.log(end)
        steps = [p.step for p in s.tail(child_id, names=["loss"])]
        assert steps and min(steps) == 7 and max(steps) == 12  # logs from fork_step + 1
    # errors: an unknown trial, an unknown sweep
    rc, out = cli.run(
        "sweep", "promote", rec.name, "--trial", "9", "--runs-dir", "runs", timeout=60
    )
    assert rc == 1 and "has no trial 9 (trials: 0)" in out
    rc, out = cli.run("sweep", "promote", "nope", "--runs-dir", "runs", timeout=60)
    assert rc == 4 and "no sweep 'nope'" in out


def test_promote_trial_without_checkpoint_says_how_to_fix(cli):
    # build_sweep's trial 2 was pruned before its first save: no complete checkpoint.
    rec = build_sweep(cli.runs_dir, cli.dir)
    rc, out = cli.run("sweep", "promote", rec.id, "--trial", "2", "--runs-dir", "runs", timeout=60)
    assert rc == 1, out
    assert "has no complete checkpoint" in out and "training.save_every" in out


def test_promote_help_is_promotes_own_usage(capsys):
    from tuitrain.cli import main

    assert main(["sweep", "promote", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tuitrain sweep promote") and "--trial N" in out
    assert "--n-trials" not in out  # the sweep's own options are not promote's
    assert main(["--runs-dir", "/nonexistent", "sweep", "promote", "-h"]) == 0
    assert "usage: tuitrain sweep promote" in capsys.readouterr().out
