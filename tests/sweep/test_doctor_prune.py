"""Doctor pruning in sweeps (issue 11): `pruning: {doctor: true}` validated (default off, a typo
named with the fix), and a real 2-trial sweep where one trial's LR diverges: the doctor stops it,
its run ends `pruned` with the evidence as its reason (kept in the trial record and printed by
`tuitrain sweep show`), while the other trial completes."""

from __future__ import annotations

import json

import pytest

from tuitrain.config.errors import ConfigError
from tuitrain.store import Store
from tuitrain.sweep.records import list_sweeps
from tuitrain.sweep.spec import parse_spec

BASE = {"base": "b.yaml", "space": {"optimizer.lr": [1e-3]}}


def test_doctor_pruning_is_opt_in_and_validated():
    assert parse_spec(BASE).pruning.doctor is False
    on = parse_spec({**BASE, "pruning": {"doctor": True}})
    assert on.pruning.doctor is True and on.prune_enabled()  # median pruning is separate
    grid = parse_spec({**BASE, "method": "grid", "pruning": {"doctor": True}})
    assert grid.pruning.doctor and not grid.prune_enabled()
    with pytest.raises(ConfigError) as exc:
        parse_spec({**BASE, "pruning": {"docter": True}})
    (issue,) = exc.value.issues
    assert issue.path == "pruning.docter" and "'doctor'" in issue.fix
    with pytest.raises(ConfigError) as exc:
        parse_spec({**BASE, "pruning": {"doctor": "sometimes"}})
    assert exc.value.issues[0].path == "pruning.doctor"


# SGD ramping to LR 10 over 30 steps, clipped at 1.0 (the doctor e2e tests' spike): the loss
# jumps at about step 20-25 and stays up. That trial is long (4000 steps: even at 100 steps/s the
# doctor, polled every 0.5 s, sees it diverge well before its end); LR 0.001 trains on quietly
# for 40 steps. Both run at once; median pruning is off, so only the doctor prunes.
SWEEP = """\
name: dp
base: tiny.yaml
method: tpe
n_trials: 2
parallel: 2
space:
  optimizer.lr: {type: loguniform, low: 1.0e-4, high: 10.0}
  training.max_steps: [40, 4000]
enqueue:
  - {optimizer.lr: 1.0e-3, training.max_steps: 40}
  - {optimizer.lr: 10.0, training.max_steps: 4000}
set: [optimizer.name=sgd, training.max_grad_norm=1.0, scheduler.warmup_steps=30, training.max_steps=40,
      training.eval_every=40, batch.size=8, data.max_bytes=60000,
      model.arch.max_position_embeddings=64, doctor.enabled=false]
pruning: {enabled: false, doctor: true, grace_s: 30}
"""


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_doctor_prunes_the_diverging_trial_and_the_other_completes(cli):
    cli.write("dp.yaml", SWEEP)
    rc, out = cli.run("sweep", "dp.yaml", "--runs-dir", "runs")
    assert rc == 0, out
    (rec,) = list_sweeps(cli.runs_dir)
    by_lr = {t.params["optimizer.lr"]: t for t in rec.trials}
    calm, wild = by_lr[0.001], by_lr[10.0]
    assert calm.state == "complete" and calm.prune_reason is None, out
    assert wild.state == "pruned", out
    assert wild.prune_reason.startswith(f"pruned by doctor at step {wild.pruned_step}: ")
    assert wild.prune_reason.endswith(("(exploding_gradients)", "(loss_spike)"))
    assert 0 < wild.pruned_step < 4000
    with Store(cli.runs_dir) as s:
        assert s.get_run(calm.run_id).status == "completed"
        run = s.get_run(wild.run_id)
        assert run.status == "pruned" and run.exit_reason == wild.prune_reason
        assert run.last_step < 4000, "stopped early, not run to the end"
    assert f"trial {wild.number}: {wild.prune_reason}" in out
    rc, shown = cli.run("sweeps", rec.id, "--runs-dir", "runs", timeout=60)
    assert rc == 0, shown
    assert f"pruned by doctor at step {wild.pruned_step}" in shown
    assert f"trial {wild.number}: {wild.prune_reason}" in shown
    rc, js = cli.run("sweeps", rec.id, "--runs-dir", "runs", "--format", "json", timeout=60)
    trials = {t["number"]: t for t in json.loads(js)["trials"]}
    assert trials[wild.number]["prune_reason"] == wild.prune_reason
