"""Provides the script that makes the doctor's labelled real curves: it trains the demo model with
settings that provoke each symptom and stores each run's metric rows as a small JSON fixture.

    python tests/doctor/make_fixtures.py [CASE ...]     # all cases by default; ~1-2 min CPU each
    HF_HUB_OFFLINE=1 python tests/doctor/make_fixtures.py stock-demo stock-sft-demo stock-seq-cls tiny-epochs

Each case is the demo config (configs/demo.yaml) with a few --set overrides, 240 optimizer steps,
one process on CPU, single-threaded so several engineers can share the machine. The labels (which
symptoms a human sees in each curve, and from which step) live in fixtures/labels.json, written
by hand after looking at the curves: this script only records what the trainer did.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tuitrain.config import load_config  # noqa: E402
from tuitrain.runs import liveness  # noqa: E402
from tuitrain.runs.launch import launch, stop  # noqa: E402
from tuitrain.store import Store  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEMO = REPO / "configs" / "demo.yaml"
ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
# Shorter than the demo (240 of 600 steps), every step logged, no sample generations and no
# periodic checkpoints: the curves keep their shape at a fraction of the CPU cost.
COMMON = [
    "training.max_steps=240",
    "training.eval_every=30",
    "training.eval_max_batches=4",
    "training.log_every=1",
    "training.save_every=100000",
    "generation.enabled=false",
    "doctor.enabled=false",
]
CASES: dict[str, list[str]] = {
    "healthy-a": [],
    "healthy-b": ["run.seed=7", "training.log_every=5"],
    "healthy-c": ["run.seed=3", "optimizer.lr=5e-4"],
    "lr-high": ["optimizer.lr=5e-2", "training.max_grad_norm=0"],
    "lr-high-clipped": ["optimizer.lr=2e-2"],
    "lr-low": ["optimizer.lr=1e-6"],
    "overfit": ["data.max_train_samples=32", "training.eval_every=15"],
    "clip-0.01": ["training.max_grad_norm=0.01"],
    "const-high": ["scheduler.name=constant", "scheduler.warmup_ratio=0", "optimizer.lr=8e-3"],
    # SGD has no Adam normalisation: a long warmup to a far too high LR blows up mid-warmup.
    "sgd-diverge": [
        "optimizer.name=sgd",
        "optimizer.lr=10",
        "training.max_grad_norm=0",
        "scheduler.warmup_ratio=0.8",
    ],
    "sgd-spike-clipped": ["optimizer.name=sgd", "optimizer.lr=10", "scheduler.warmup_ratio=0.8"],
}
# The stock configs at their defaults (shortened where a full run is minutes of CPU here), each
# recorded once: a healthy run of each must raise no warning. Only the rows the doctor's training
# rules read are kept (no throughput rows: this shared machine's load is not the config's).
STOCK_SETS = ["generation.enabled=false", "doctor.enabled=false", "training.save_every=100000"]
STOCK: dict[str, tuple[str, list[str]]] = {
    "stock-demo": ("configs/demo.yaml", ["training.max_steps=300"]),
    "stock-sft-demo": ("configs/sft-demo.yaml", []),
    "stock-seq-cls": ("configs/seq-cls-minilm.yaml", []),
    # A tiny data set: 96 examples, 6 batches an epoch, 40 epochs: an epoch boundary every 6 steps.
    "tiny-epochs": (
        "configs/demo.yaml",
        [
            "data.max_train_samples=96",
            "training.epochs=40",
            "training.max_steps=240",
            "training.log_every=1",
            "training.eval_every=30",
        ],
    ),
}
STOCK_KEEP = ("loss", "grad_norm", "lr", "epoch")  # and every val_* row
TIMEOUT_S = 900.0


def sig(v: float) -> float | None:
    """Five significant digits (small files); NaN/inf as None/strings JSON can hold."""
    if v != v:
        return None
    if v in (float("inf"), float("-inf")):
        return v
    return float(f"{v:.5g}")


def make(
    name: str, sets: list[str], config: Path = DEMO, keep: tuple[str, ...] | None = None
) -> Path:
    """Train one case in a scratch runs directory and write fixtures/<name>.json (with `keep`:
    only those metrics and the val_* ones)."""
    with tempfile.TemporaryDirectory(prefix="doctor-fx-") as tmp:
        runs = Path(tmp) / "runs"
        resolved = load_config(config, sets=sets)
        run = launch(resolved, runs, name=name, extra_env=ENV)
        t0 = time.monotonic()
        with Store(runs) as store:
            while not liveness.get_run(store, run.id).terminal:
                if time.monotonic() - t0 > TIMEOUT_S:
                    stop(store.get_run(run.id), grace_s=5.0, runs_dir=runs)
                    raise SystemExit(f"{name}: not done in {TIMEOUT_S:.0f} s")
                time.sleep(1.0)
            info = store.get_run(run.id)
            if info.status == "failed":  # a broken setup, not a symptom: never a fixture
                raise SystemExit(f"{name}: failed: {info.exit_reason}")
            pts = store.tail(run.id)
            start = min((p.time for p in pts), default=0.0)
            metrics: dict[str, list] = {}
            for p in pts:
                if p.name == "gpu_mem_gb":
                    continue
                if keep is not None and p.name not in keep and not p.name.startswith("val_"):
                    continue
                metrics.setdefault(p.name, []).append(
                    [p.step, sig(p.value), round(p.time - start, 3)]
                )
            events = [
                [e.step, e.kind, e.message, round(e.time - start, 3)]
                for e in store.events(run.id)
                if e.kind != "generation"
            ]
        out = {
            "case": name,
            "config_file": str(config.relative_to(REPO)),
            "sets": sets,
            "status": info.status,
            "exit_reason": info.exit_reason,
            "config": info.config,
            "derived": info.derived,
            "metrics": metrics,
            "events": events,
            "wall_s": round(time.monotonic() - t0, 1),
        }
        shutil.rmtree(runs, ignore_errors=True)
    path = FIXTURES / f"{name}.json"
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    return path


def main(argv: list[str]) -> int:
    """Make the named cases (default: all)."""
    names = argv or list(CASES)  # the STOCK cases only when named
    unknown = [n for n in names if n not in CASES and n not in STOCK]
    if unknown:
        known = ", ".join([*CASES, *STOCK])
        print(f"unknown case(s) {unknown}; known: {known}", file=sys.stderr)
        return 2
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for n in names:
        if n in STOCK:
            cfg, sets = STOCK[n]
            path = make(n, [*STOCK_SETS, *sets], REPO / cfg, STOCK_KEEP)
        else:
            path = make(n, [*COMMON, *CASES[n]])
        data = json.loads(path.read_text())
        print(f"{n}: {data['status']} in {data['wall_s']} s -> {path.name}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
