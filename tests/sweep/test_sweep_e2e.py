"""End-to-end sweeps: the real CLI, real trials (accelerate + trainer), real SQLite and Optuna."""

from __future__ import annotations

import json
import re
import signal

import pytest

from tuitrain.runs.launch import group_alive
from tuitrain.store import Store
from tuitrain.sweep.records import list_sweeps

from .helpers import wait_for

pytestmark = pytest.mark.e2e


def only_sweep(cli):
    sweeps = list_sweeps(cli.runs_dir)
    assert len(sweeps) == 1
    return sweeps[0]


def test_grid_of_four_trials(cli):
    cli.write(
        "grid.yaml",
        "name: g4\nbase: tiny.yaml\nmethod: grid\nspace:\n  optimizer.lr: [1e-3, 1e-2]\n  model.arch.num_layers: [1, 2]\nparallel: 2\n",
    )
    rc, out = cli.run("sweep", "grid.yaml", "--runs-dir", "runs")
    assert rc == 0, out
    rec = only_sweep(cli)
    assert rec.status == "completed" and rec.method == "grid"
    assert sorted(
        (t.params["optimizer.lr"], t.params["model.arch.num_layers"]) for t in rec.trials
    ) == [(1e-3, 1), (1e-3, 2), (1e-2, 1), (1e-2, 2)]
    with Store(cli.runs_dir) as s:
        runs = {r.id: r for r in s.list_runs(sweep_id=rec.id)}
        assert len(runs) == 4
        for t in rec.trials:
            run = runs[t.run_id]
            assert t.state == "complete" and run.status == "completed", (out, t, cli.log(run))
            # every trial is an ordinary run whose config carries the sampled values
            assert run.config["optimizer"]["lr"] == t.params["optimizer.lr"]
            assert run.config["model"]["arch"]["num_layers"] == t.params["model.arch.num_layers"]
            assert f"sweep:{rec.id}" in run.config["run"]["tags"]
            # objective: the best val_loss the run logged
            vals = [p.value for p in s.tail(run.id, names=["val_loss"])]
            assert len(vals) == 3 and t.value == min(vals)
    best = rec.best()
    assert best.value == min(t.value for t in rec.trials)
    rc, out = cli.run("ls", "--runs-dir", "runs", "--format", "json", timeout=60)
    assert rc == 0 and {r["sweep"] for r in json.loads(out)} == {rec.id}
    rc, out = cli.run("show", rec.name, "--runs-dir", "runs", timeout=60)
    assert rc == 0 and f"best: trial {best.number}" in out and best.run_id in out
    rc, out = cli.run("sweeps", "--runs-dir", "runs", "--format", "json", timeout=60)
    assert rc == 0 and json.loads(out)[0]["best_run"] == best.run_id


def test_tpe_prunes_a_poor_trial(cli):
    # Two good short trials finish first; the third (tiny LR, long) is worse than their median at
    # its first evaluation and must be stopped there and marked pruned. It is long (20000 steps):
    # a fast machine ran 400 tiny steps before the runner's stop arrived, and it completed.
    cli.write(
        "tpe.yaml",
        "name: tp\nbase: tiny.yaml\nmethod: tpe\nn_trials: 3\nparallel: 2\n"
        "space:\n  optimizer.lr: {type: loguniform, low: 1e-7, high: 1e-1}\n  training.max_steps: [6, 20000]\n"
        "enqueue:\n  - {optimizer.lr: 0.01, training.max_steps: 6}\n  - {optimizer.lr: 0.02, training.max_steps: 6}\n"
        "  - {optimizer.lr: 1.0e-7, training.max_steps: 20000}\n"
        "pruning: {n_startup_trials: 2}\n",
    )
    rc, out = cli.run("sweep", "tpe.yaml", "--runs-dir", "runs")
    assert rc == 0, out
    rec = only_sweep(cli)
    states = {t.number: t.state for t in rec.trials}
    assert states == {0: "complete", 1: "complete", 2: "pruned"}, out
    pruned = rec.trials[2]
    with Store(cli.runs_dir) as s:
        run = s.get_run(pruned.run_id)
        assert run.status == "pruned" and "pruned by sweep" in (run.exit_reason or "")
        assert s.last_step(run.id) < 20000
    assert "pruning at step" in out
    assert not any(group_alive(g) for g in cli.trainer_groups())


def test_failing_trials_do_not_stop_the_sweep(cli):
    # (scratch, bytes) trains; a missing pretrained model fails inside the trainer; the two
    # mixed combinations are invalid configs and fail before any launch.
    cli.write(
        "fail.yaml",
        "name: fl\nbase: tiny.yaml\nmethod: grid\nspace:\n  model.name_or_path: [null, /nonexistent/model]\n  model.tokenizer: [bytes, auto]\n",
    )
    rc, out = cli.run("sweep", "fail.yaml", "--runs-dir", "runs")
    assert rc == 0, out  # a best trial exists
    rec = only_sweep(cli)
    by = {(t.params["model.name_or_path"], t.params["model.tokenizer"]): t for t in rec.trials}
    assert by[(None, "bytes")].state == "complete"
    runtime = by[("/nonexistent/model", "auto")]
    assert runtime.state == "failed" and runtime.run_id and runtime.run_status == "failed"
    for key in ((None, "auto"), ("/nonexistent/model", "bytes")):
        t = by[key]
        assert t.state == "failed" and t.run_id is None and "model.tokenizer" in t.error
    assert rec.status == "completed" and rec.counts() == {"complete": 1, "failed": 3}


def test_interrupting_a_sweep_stops_its_trials(cli):
    cli.write(
        "long.yaml",
        "name: ir\nbase: tiny.yaml\nmethod: random\nn_trials: 6\nparallel: 2\nset: [training.max_steps=100000]\nspace:\n  optimizer.lr: {type: loguniform, low: 1e-4, high: 1e-2}\n",
    )
    proc = cli.start("sweep", "long.yaml", "--runs-dir", "runs")

    def two_training():
        if not (cli.runs_dir / "tuitrain.db").exists():
            return False
        with Store(cli.runs_dir) as s:
            runs = s.list_runs()
            return len(runs) == 2 and all(
                r.status == "running" and (s.last_step(r.id) or 0) >= 1 for r in runs
            )

    wait_for(two_training, 150, "two trials to be training")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    rec = only_sweep(cli)
    assert rec.status == "stopped" and len(rec.trials) == 2
    assert all(t.state == "stopped" for t in rec.trials), out
    with Store(cli.runs_dir) as s:
        # ended through the graceful stop command (the trainer's user stop is early_stopped)
        assert {r.status for r in s.list_runs()} <= {"early_stopped", "stopped"}
        assert all(c.status == "applied" for r in s.list_runs() for c in s.commands(r.id))
    assert cli.trainer_groups() and not any(group_alive(g) for g in cli.trainer_groups())


def test_detached_sweep_prints_its_id_and_runs_on(cli):
    cli.write(
        "one.yaml", "name: d1\nbase: tiny.yaml\nmethod: grid\nspace:\n  optimizer.lr: [1e-2]\n"
    )
    # Without PYTHONUNBUFFERED (as on a fresh CI runner) stdout to a pipe is block-buffered:
    # the id must still come before the stderr line that shares the pipe.
    rc, out = cli.run(
        "sweep", "one.yaml", "--detach", "--runs-dir", "runs", timeout=150,
        env={"PYTHONUNBUFFERED": None},
    )  # fmt: skip
    assert rc == 0, out
    pid = re.search(r"background \(pid (\d+)\)", out)
    assert pid, out
    cli.groups.append(int(pid.group(1)))  # its own session: killed at teardown if still there
    sweep_id = out.strip().splitlines()[0]
    assert sweep_id.startswith("sw-d1-")

    def ended():
        return next(
            (r for r in list_sweeps(cli.runs_dir) if r.id == sweep_id and r.status != "running"),
            None,
        )

    rec = wait_for(ended, 150, "the detached sweep to end")
    assert rec.status == "completed" and rec.counts() == {"complete": 1}
