"""Provides the LR-finding benchmark: range test and LR race vs a grid of full-length runs (the ground truth).

For each config (the from-scratch demo, the MiniLM fine-tuning config) it runs the range test,
the race (factors 0.3, 1, 3 of the configured LR, extended by up to EXTEND branches past an edge
that wins: `race` is the race as first judged, `race_extended` after its extensions) and a grid of
full-length runs at the configured LR x GRID factors, and prints for each method the ratio
suggested LR / grid's best LR and its cost (wall time) as a fraction of the grid's. Noise: the
race's and every grid cell's train-loss noise (standard error of the level over the last third),
the grid's runner-up margin, and a second range test with another seed. Race branches run
min(200, full steps / 3) steps. Last line: JSON.

    python tests/bench/lr_find_bench.py                  # full: both configs, as configured
    python tests/bench/lr_find_bench.py --reduced        # tiny model / few steps (minutes on a busy CPU)
    python tests/bench/lr_find_bench.py --reduced --configs demo

--reduced shrinks every run (tiny from-scratch model for the demo, 60-step runs, eval capped at
4 batches, a 3-point grid x0.1/x1/x10 and 20-step race branches): the figures then measure the
method on a small problem, not the configs as shipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from tuitrain.config import load_config
from tuitrain.lrfind.probe import launch_probe, result
from tuitrain.lrfind.race import Start, lane_stats
from tuitrain.lrfind.sequence import run_race
from tuitrain.runs.launch import launch
from tuitrain.store import Store

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "demo": REPO / "configs" / "demo.yaml",
    "minilm": REPO / "configs" / "seq-cls-minilm.yaml",
}
ENV = {
    "OMP_NUM_THREADS": "2",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
RACE = (0.3, 1.0, 3.0)
EXTEND = 2
REDUCED = {
    "demo": [
        "model.arch.hidden_size=32",
        "model.arch.num_layers=1",
        "model.arch.num_heads=2",
        "model.arch.max_position_embeddings=64",
        "data.max_seq_length=32",
        "data.max_bytes=60000",
        "batch.size=8",
    ],
    "minilm": [],
}
REDUCED_COMMON = [
    "training.max_steps=60",
    "training.eval_max_batches=4",
    "generation.max_new_tokens=4",
]


def wait(runs_dir: Path, run_id: str, timeout: float = 3600) -> object:
    """Poll until the run ends."""
    deadline = time.monotonic() + timeout
    with Store(runs_dir) as s:
        while time.monotonic() < deadline:
            run = s.get_run(run_id)
            if run.terminal:
                return run
            time.sleep(1.0)
    raise TimeoutError(f"run {run_id} did not end within {timeout} s")


def train_noise(runs_dir: Path, run_id: str) -> float:
    """Standard error of a run's train-loss level over its last third (as the race's lanes)."""
    with Store(runs_dir) as s:
        return lane_stats([p.value for p in s.tail(run_id, names=["loss"])])[1]


def bench_config(name: str, runs_dir: Path, reduced: bool) -> dict:
    """Range test, race and grid on one config; ratios and cost fractions."""
    sets = (REDUCED[name] + REDUCED_COMMON) if reduced else []
    base = load_config(CONFIGS[name], sets=sets)
    lr0 = base.derived.scaled_lr
    grid = (0.1, 1.0, 10.0) if reduced else GRID
    out: dict = {"config": name, "configured_lr": lr0}

    t = time.time()
    info = launch_probe(base, runs_dir, steps=60 if reduced else 100, extra_env=ENV)
    wait(runs_dir, info.id)
    with Store(runs_dir) as s:
        probe = result(s, info.id)
    out["range_test"] = {
        "suggested_lr": probe.suggestion.suggested_lr,
        "method": probe.suggestion.method,
        "clear": probe.suggestion.clear,
        "warnings": probe.suggestion.warnings,
        "wall_s": time.time() - t,
    }
    # Its noise: the same test under another seed (not counted in its cost).
    seed = (base.config.run.seed or 0) + 1
    again = load_config(CONFIGS[name], sets=[*sets, f"run.seed={seed}"])
    info2 = launch_probe(again, runs_dir, steps=60 if reduced else 100, extra_env=ENV)
    wait(runs_dir, info2.id)
    with Store(runs_dir) as s:
        out["range_test"]["other_seed_suggested_lr"] = result(s, info2.id).suggestion.suggested_lr

    full_steps = base.derived.total_steps or 600
    race_steps = 20 if reduced else max(5, min(200, full_steps // 3))
    t = time.time()
    rounds: list[dict] = []

    def judged(verdict, factors) -> None:
        rounds.append(
            {
                "factors": sorted(factors),
                "winner_lr": None if verdict.winner is None else lr0 * verdict.winner.factor,
                "too_close": verdict.too_close,
                "margin": verdict.margin,
                "noise": verdict.noise,
                "lanes": [
                    {"factor": ln.factor, "val_loss": ln.val_loss, "noise": ln.noise}
                    for ln in verdict.lanes
                ],
                "wall_s": time.time() - t,
            }
        )

    start = Start(base, base.config.optimizer.lr, lr0, label=f"{name}-bench")
    run_race(start, list(RACE), race_steps, runs_dir, extend=EXTEND, on_round=judged)
    out["race"] = {**rounds[0], "steps": race_steps}
    out["race_extended"] = {**rounds[-1], "steps": race_steps, "rounds": len(rounds)}

    t = time.time()
    cells = []
    for f in grid:
        r = load_config(
            CONFIGS[name], sets=[*sets, f"optimizer.lr={base.config.optimizer.lr * f!r}"]
        )
        run = wait(runs_dir, launch(r, runs_dir, name=f"{name}-grid-x{f:g}", extra_env=ENV).id)
        cells.append(
            {
                "factor": f,
                "lr": lr0 * f,
                "val_loss": run.summary.get("final_val_loss"),
                "noise": train_noise(runs_dir, run.id),
                "status": run.status,
            }
        )
    grid_s = time.time() - t
    ok = [c for c in cells if c["val_loss"] is not None and math.isfinite(c["val_loss"])]
    best = min(ok, key=lambda c: c["val_loss"]) if ok else None
    ranked = sorted(ok, key=lambda c: c["val_loss"])
    out["grid"] = {
        "cells": cells,
        "best_lr": best and best["lr"],
        "runner_up_margin": ranked[1]["val_loss"] - ranked[0]["val_loss"]
        if len(ranked) > 1
        else None,
        "wall_s": grid_s,
    }
    for key, lr in (
        ("range_test", out["range_test"]["suggested_lr"]),
        ("race", out["race"]["winner_lr"]),
        ("race_extended", out["race_extended"]["winner_lr"]),
    ):
        m = out[key]
        m["ratio_to_grid_best"] = (lr / best["lr"]) if (lr and best) else None
        m["within_3x"] = (
            m["ratio_to_grid_best"] is not None and 1 / 3 <= m["ratio_to_grid_best"] <= 3
        )
        m["cost_fraction"] = m["wall_s"] / grid_s if grid_s else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reduced", action="store_true", help="tiny runs (see the module docstring)")
    ap.add_argument("--configs", default="demo,minilm", help="comma-separated: demo, minilm")
    ap.add_argument("--runs-dir", default=None, help="keep the runs here (default: a temp dir)")
    args = ap.parse_args()
    os.environ.update(ENV)
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="lrfind-bench-"))
    print(f"runs in {runs_dir}", file=sys.stderr, flush=True)
    results = []
    for name in args.configs.split(","):
        res = bench_config(name.strip(), runs_dir, args.reduced)
        results.append(res)
        for key in ("range_test", "race", "race_extended"):
            m = res[key]
            print(
                f"{name} {key}: lr {m.get('suggested_lr', m.get('winner_lr'))} ratio to grid best "
                f"{m['ratio_to_grid_best']} within 3x {m['within_3x']} cost {m['cost_fraction']}",
                file=sys.stderr,
                flush=True,
            )
        print(json.dumps(res), file=sys.stderr, flush=True)  # each config's figures as they come
    print(json.dumps({"reduced": args.reduced, "runs_dir": str(runs_dir), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
