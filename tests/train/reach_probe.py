"""Provides the trainer side of the schema walk: trains each config of a JSON list in this one
process with the real entry point (`tuitrain.train.loop.train`, real Accelerate, real store) and
writes what each run did (status, events, metrics, checkpoints, printed progress) as JSON.

    python tests/train/reach_probe.py RUNS_DIR IN.json OUT.json
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path


def observe(runs_dir: Path, label: str, config: dict) -> dict:
    """Train `config` to its end; what it did, as plain JSON values."""
    import torch

    from tuitrain.config import parse, save_yaml, to_dict
    from tuitrain.runs.checkpoints import best_steps
    from tuitrain.store import Store
    from tuitrain.train.checkpoint import periodic
    from tuitrain.train.loop import train

    cfg = parse(config)
    with Store(runs_dir) as s:
        run = s.create_run(to_dict(cfg), {}, name=label)
        run_dir = s.run_dir(run.id)
    run_dir.mkdir(parents=True)
    save_yaml(cfg, run_dir / "config.yaml")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        train(run_dir)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)  # the next config starts from the default again
    with Store(runs_dir) as s:
        info = s.get_run(run.id)
        points = s.tail(run.id)
        events = s.events(run.id)
    metrics: dict[str, dict[int, float]] = {}
    for p in points:
        metrics.setdefault(p.name, {})[p.step] = round(p.value, 7)
    skip = {"samples_per_s", "tokens_per_s", "mfu"}  # wall-clock rates differ run to run
    clocked = ("time/", "sys/")  # step-time split and system samples: wall clock too
    return {
        "status": info.status,
        "reason": info.exit_reason,
        "summary": {
            k: v
            for k, v in info.summary.items()
            if k not in ("wall_time_s", "tokens_per_s", "mfu", "time")
        },
        "events": [(e.kind, e.step, e.message) for e in events if e.kind not in ("checkpoint",)],
        "checkpoint_events": [e.step for e in events if e.kind == "checkpoint"],
        "metrics": {
            k: v for k, v in metrics.items() if k not in skip and not k.startswith(clocked)
        },
        "periodic": [step for step, _ in periodic(run_dir)],
        "best": best_steps(run_dir),
        "progress_lines": sum(ln.startswith("step ") for ln in out.getvalue().splitlines()),
        "deterministic": deterministic,
    }


def main(argv: list[str]) -> int:
    runs_dir, src, dst = Path(argv[0]), Path(argv[1]), Path(argv[2])
    todo = json.loads(src.read_text())
    done = {label: observe(runs_dir, label, config) for label, config in todo}
    dst.write_text(json.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
