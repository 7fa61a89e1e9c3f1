"""Sweep overhead benchmark: runs a real 4-trial TPE sweep with pruning (tiny trials, CPU) and
prints where the time goes: trainer start-up, the scheduler's gap between trials, and how fast
a pruning decision reaches the trainer.

    python tests/bench/sweep_bench.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TINY = f"""\
extends: {REPO / "configs" / "demo.yaml"}
model:
  arch: {{hidden_size: 32, num_layers: 1, num_heads: 2, max_position_embeddings: 32}}
data: {{max_bytes: 20000, max_seq_length: 32}}
batch: {{size: 4}}
scheduler: {{warmup_ratio: 0.0}}
training: {{max_steps: 6, eval_every: 2, eval_max_batches: 1, log_every: 1, save_every: 100000}}
generation: {{enabled: false}}
"""
SWEEP = """\
name: bench
base: tiny.yaml
method: tpe
n_trials: 4
space:
  optimizer.lr: {type: loguniform, low: 1e-7, high: 1e-1}
  training.max_steps: [6, 400]
enqueue:
  - {optimizer.lr: 0.01, training.max_steps: 6}
  - {optimizer.lr: 0.02, training.max_steps: 6}
  - {optimizer.lr: 1.0e-7, training.max_steps: 400}
  - {optimizer.lr: 1.0e-7, training.max_steps: 400}
pruning: {n_startup_trials: 2}
"""


def main() -> None:
    """Run the sweep and print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", default=None, help="work in this folder and keep it")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="sweep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "tiny.yaml").write_text(TINY)
    (work / "sweep.yaml").write_text(SWEEP)

    from tuitrain.store import Store
    from tuitrain.sweep.runner import SweepRunner
    from tuitrain.sweep.spec import read_spec

    t0 = time.time()
    runner = SweepRunner(
        read_spec(work / "sweep.yaml"), work / "sweep.yaml", work / "runs", say=lambda s: None
    )
    t_prep = time.time() - t0
    rec = runner.run(handle_signals=False)
    wall = time.time() - t0

    store = Store(work / "runs")
    runs = [store.get_run(t.run_id) for t in rec.trials]
    startup = [r.started - r.created for r in runs if r.started]
    gaps = [
        b.created - a.ended for a, b in zip(runs, runs[1:], strict=False) if a.ended and b.created
    ]
    print(
        f"sweep: {len(rec.trials)} trials, states {rec.counts()}, wall {wall:.1f} s (prepare {t_prep:.2f} s)"
    )
    print(
        f"trainer start-up (run created -> running): median {statistics.median(startup):.1f} s, max {max(startup):.1f} s"
    )
    print(
        f"scheduler gap (trial ended -> next trial launched): median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s"
    )
    for t in rec.trials:
        if t.state != "pruned":
            continue
        point = next(p for p in store.tail(t.run_id, names=["val_loss"]) if p.step == t.pruned_step)
        cmd = next(c for c in store.commands(t.run_id) if c.kind == "stop")
        run = store.get_run(t.run_id)
        print(
            f"trial {t.number} pruned at step {t.pruned_step}: metric written -> stop sent {cmd.created - point.time:.2f} s,"
            f" -> applied by trainer {(cmd.finished or cmd.created) - cmd.created:.2f} s, -> run ended {run.ended - cmd.created:.2f} s;"
            f" {store.last_step(t.run_id)} of 400 steps run"
        )
    print(
        f"files kept in {work}" if args.keep else f"(work dir {work}; pass --keep DIR to keep it)"
    )


if __name__ == "__main__":
    main()
