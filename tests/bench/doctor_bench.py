"""Benchmark of the doctor: per symptom precision, recall and median detection delay over the
labelled real fixtures (tests/doctor/fixtures, demo-model runs) and the constructed curves, the
false alarms on healthy runs, and the time of one diagnosis of a 1M-step run. Prints figures;
asserts nothing.

    python tests/bench/doctor_bench.py            # about 2-4 minutes on 2 busy cores
    python tests/bench/doctor_bench.py --quick    # 100k-step run instead of 1M

Each fixture is replayed into a real Store step by step and diagnosed after every logged step,
as the trainer's doctor would. A detection is a diagnosis of severity warning or critical at any
replay point; its delay is the first such step minus the labelled onset. Targets (issue 11): no
warning/critical on healthy runs; every provoked symptom found; 1M-step diagnosis < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.doctor import curves, replay  # noqa: E402
from tuitrain.doctor import SYMPTOMS, diagnose_run  # noqa: E402
from tuitrain.store import Store  # noqa: E402


def cases() -> list[tuple[str, dict, dict[str, int]]]:
    """(name, fixture, {symptom: onset}) for every real and constructed fixture."""
    out = [(n, replay.load(n), lab["symptoms"]) for n, lab in replay.labels().items()]
    for kind, onsets in curves.ONSETS.items():
        out.append((f"constructed-{kind}", curves.make(kind), onsets))
    return out


def detect(store: Store, fx: dict, every: int = 1) -> dict[str, int]:
    """{symptom: first step it was warning/critical} over a step-by-step replay."""
    first: dict[str, int] = {}
    for step, diags in replay.replay(store, fx, every=every):
        for d in diags:
            if d.severity != "info" and d.id not in first:
                first[d.id] = step
    return first


def stall_cases(store: Store) -> list[tuple[str, dict[str, int], dict[str, int]]]:
    """A healthy run whose steps stop while its process lives: diagnosed 1 s and 10 min after
    its last step (liveness verdict from the run record, as the store gives it). The delay is
    counted in seconds past the stall threshold, not in steps."""
    import dataclasses

    from tuitrain.doctor import diagnose, read_run, thresholds_for

    fx = curves.make("healthy", steps=300)
    rid = replay.create(store, fx)
    store.log_metrics(rid, replay.rows_of(fx))
    last_t = max(r[3] for r in replay.rows_of(fx))
    out = []
    for name, gap, onsets in (
        ("stall-live-1s", 1.0, {}),
        ("stall-live-600s", 600.0, {"stalled": 0}),
    ):
        run = dataclasses.replace(
            store.get_run(rid), status="running", started=replay.T0, heartbeat=last_t + gap
        )
        if hasattr(run, "step_advanced"):
            run = dataclasses.replace(run, step_advanced=last_t, step_time_s=0.1)
        th = thresholds_for(fx["config"])
        diags = diagnose(read_run(store, run, th.window, now=last_t + gap), th)
        out.append((name, {d.id: 0 for d in diags if d.severity != "info"}, onsets))
    return out


def scoring(root: Path) -> dict:
    """Precision, recall, delays per symptom; false alarms on healthy runs."""
    tp = dict.fromkeys(SYMPTOMS, 0)
    fp = dict.fromkeys(SYMPTOMS, 0)
    fn = dict.fromkeys(SYMPTOMS, 0)
    delays: dict[str, list[int]] = {s: [] for s in SYMPTOMS}
    healthy_alarms: list[str] = []
    missed: list[str] = []
    extra: list[str] = []
    with Store(root / "score") as store:
        for name, fx, onsets in cases():
            t0 = time.perf_counter()
            # Constructed runs are 1000 steps: every 5th step keeps the bench short (delays +-5).
            found = detect(store, fx, 5 if name.startswith("constructed-") else 1)
            for sym, onset in onsets.items():
                if sym in found:
                    tp[sym] += 1
                    delays[sym].append(found[sym] - onset)
                else:
                    fn[sym] += 1
                    missed.append(f"{name}:{sym}")
            for sym, step in found.items():
                if sym not in onsets:
                    fp[sym] += 1
                    extra.append(f"{name}:{sym}@{step}")
                    if not onsets:
                        healthy_alarms.append(f"{name}:{sym}@{step}")
            shown = ", ".join(f"{s}@{st}" for s, st in sorted(found.items(), key=lambda x: x[1]))
            print(
                f"  {name:32} labels {sorted(onsets) or '-'}; found {shown or '-'} ({time.perf_counter() - t0:.1f} s)"
            )
        for name, found, onsets in stall_cases(store):
            for sym in onsets:
                tp[sym] += sym in found
                fn[sym] += sym not in found
                if sym in found:
                    delays[sym].append(found[sym] - onsets[sym])
            for sym, when in found.items():
                if sym not in onsets:
                    fp[sym] += 1
                    extra.append(f"{name}:{sym}@{when}")
            print(f"  {name:32} labels {sorted(onsets) or '-'}; found {sorted(found) or '-'}")
    per = {}
    print(
        f"\n{'symptom':22} {'prec':>6} {'recall':>6} {'TP':>3} {'FP':>3} {'FN':>3} {'median delay':>13}"
    )
    for s in SYMPTOMS:
        prec = tp[s] / (tp[s] + fp[s]) if tp[s] + fp[s] else None
        rec = tp[s] / (tp[s] + fn[s]) if tp[s] + fn[s] else None
        delay = statistics.median(delays[s]) if delays[s] else None
        per[s] = {
            "precision": prec,
            "recall": rec,
            "tp": tp[s],
            "fp": fp[s],
            "fn": fn[s],
            "median_delay_steps": delay,
        }
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        print(
            f"{s:22} {fmt(prec):>6} {fmt(rec):>6} {tp[s]:>3} {fp[s]:>3} {fn[s]:>3} {'-' if delay is None else delay:>13}"
        )
    print(f"\nmissed: {missed or 'none'}\nnot labelled: {extra or 'none'}")
    print(f"false alarms on healthy runs: {len(healthy_alarms)} {healthy_alarms or ''}")
    return {"per_symptom": per, "healthy_false_alarms": len(healthy_alarms), "missed": missed}


def watch_replay(store: Store, fx: dict, every: int = 5, parent: str | None = None, fork: int = 0):
    """Feed the fixture to a run (a branch of `parent` from `fork` when given) and tick the
    trainer's DoctorWatch every `every` logged steps, as the trainer does; returns
    ({symptom: warning/critical openings}, logged steps). Default doctor settings."""
    import dataclasses

    from tuitrain.config.schema import DoctorGroup
    from tuitrain.doctor.watch import DoctorWatch

    rows = sorted((r for r in replay.rows_of(fx) if r[0] > fork), key=lambda r: r[0])
    run = store.create_run(
        fx["config"],
        fx["derived"],
        name=fx["case"],
        status="running",
        parent=parent,
        fork_step=fork if parent else None,
    )
    opens: dict[str, int] = {}

    def emit(kind, msg, step, data):
        store.add_event(run.id, kind, msg, step, data)
        data = data or {}
        if kind == "doctor" and data.get("severity") in ("warning", "critical"):
            if data.get("state") == "open" or (
                data.get("state") == "update" and data["id"] not in opens
            ):
                opens[data["id"]] = opens.get(data["id"], 0) + 1

    w = DoctorWatch(store, run.id, DoctorGroup(), emit, clock=lambda: 0.0)
    steps = sorted({r[0] for r in rows})
    i = 0
    for k, step in enumerate(steps):
        batch = []
        while i < len(rows) and rows[i][0] <= step:
            batch.append(rows[i])
            i += 1
        store.log_metrics(run.id, batch)
        if k % every and k != len(steps) - 1:
            continue
        # The watch runs inside the trainer and reads the wall clock: the replayed run is live
        # as of now (its last row just logged), not stalled since the fixture's recorded time.
        now = time.time()
        store_run = dataclasses.replace(
            store.get_run(run.id),
            heartbeat=now,
            started=now - (batch[-1][3] - replay.T0),
            step_advanced=now,
        )
        w.store = _Pinned(store, store_run)
        w.check(step)
    return opens, len(steps)


class _Pinned:
    """The store, with get_run answering the replayed run as of the fixture's clock."""

    def __init__(self, store: Store, run) -> None:
        self._s, self._run = store, run

    def get_run(self, ref):
        return self._run if ref == self._run.id else self._s.get_run(ref)

    def __getattr__(self, name):
        return getattr(self._s, name)


def episodes(root: Path) -> dict:
    """Openings per labelled episode (flaps; target 1.0) and false warnings per 1000 logged
    steps on healthy runs, their branches and the stock-config fixtures (target 0)."""
    openings = labelled = 0
    false_opens = healthy_steps = 0
    notes = []
    with Store(root / "episodes") as store:
        for name, fx, onsets in cases():
            every = 5 if name.startswith("constructed-") else 1
            opens, n = watch_replay(store, fx, every)
            for sym in onsets:
                if sym in opens:
                    openings += opens[sym]
                    labelled += 1
            extra = {k: v for k, v in opens.items() if k not in onsets}
            if not onsets:
                false_opens += sum(extra.values())
                healthy_steps += n
                # the same healthy run branched at its middle: judged with its lineage
                mid = replay.steps_of(fx)[len(replay.steps_of(fx)) // 2]
                parent = replay.create(store, fx, status="completed")
                store.log_metrics(parent, [r for r in replay.rows_of(fx) if r[0] <= mid])
                b_opens, b_n = watch_replay(store, fx, every, parent=parent, fork=mid)
                false_opens += sum(b_opens.values())
                healthy_steps += b_n
                if b_opens:
                    notes.append(f"{name}-branch:{b_opens}")
            if extra and not onsets:
                notes.append(f"{name}:{extra}")
            print(f"  {name:32} openings {opens or '-'}")
    flaps = openings / labelled if labelled else None
    per_k = 1000 * false_opens / healthy_steps if healthy_steps else None
    print(
        f"flaps per episode: {flaps}; false warnings per 1000 healthy steps: {per_k} {notes or ''}"
    )
    return {"flaps_per_episode": flaps, "false_warnings_per_1k_healthy_steps": per_k}


def build_long(store: Store, steps: int) -> str:
    """A run of `steps` logged steps (loss, grad_norm, lr, tokens_per_s; val_loss every 1000)
    written through the store's batched ingest."""
    import math
    import random

    rng = random.Random(0)
    derived = {"total_steps": steps, "warmup_steps": steps // 20}
    cfg = {"model": {"task": "causal-lm", "tokenizer": "bytes"}, "training": {"max_grad_norm": 1.0}}
    rid = store.create_run(cfg, derived, name=f"long-{steps}", status="running").id
    t0 = replay.T0
    chunk = []
    for s in range(1, steps + 1):
        level = 2.1 + 3.5 * math.exp(-s / (steps / 8))
        t = t0 + 0.01 * s
        chunk += [
            (s, "loss", level * (1 + 0.04 * rng.gauss(0, 1)), t),
            (s, "grad_norm", 0.8 * math.exp(0.1 * rng.gauss(0, 1)), t),
            (s, "lr", 1e-3 * 0.5 * (1 + math.cos(math.pi * s / steps)), t),
            (s, "tokens_per_s", 10_000.0, t),
        ]
        if s % 1000 == 0:
            chunk.append((s, "val_loss", level + 0.1, t))
        if len(chunk) >= 200_000:
            store.log_metrics(rid, chunk)
            chunk = []
    store.log_metrics(rid, chunk)
    return rid


def timing(root: Path, steps: int) -> dict:
    """Median time of diagnose_run on a 1k-step and a `steps`-step run (a fresh read each time)."""
    out = {}
    with Store(root / "long") as store:
        for n in (1000, steps):
            t0 = time.perf_counter()
            rid = build_long(store, n)
            built = time.perf_counter() - t0
            run = store.get_run(rid)
            now = replay.T0 + 0.01 * n + 1
            diagnose_run(store, run, now=now)  # warm the page cache like a live reader
            times = []
            for _ in range(15):
                t = time.perf_counter()
                found = diagnose_run(store, run, now=now)
                times.append((time.perf_counter() - t) * 1000)
            ms = statistics.median(times)
            label = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}M"
            out[f"diagnose_ms_{label}"] = ms
            print(
                f"{n:>9,}-step run (built in {built:.0f} s): diagnosis {ms:.1f} ms median of 15; found {[d.id for d in found] or 'nothing'}"
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k-step timing run instead of 1M")
    ap.add_argument(
        "--part",
        choices=("all", "score", "episodes", "timing"),
        default="all",
        help="run only one part",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="doctor-bench-") as tmp:
        root = Path(tmp)
        score: dict = {"per_symptom": {}, "healthy_false_alarms": None, "missed": []}
        if args.part in ("all", "score"):
            print("replaying fixtures (diagnosis after every logged step):")
            score = scoring(root)
            print()
        ep: dict = {}
        if args.part in ("all", "episodes"):
            print("replaying fixtures through the trainer's DoctorWatch (episodes):")
            ep = episodes(root)
            print()
        t = (
            timing(root, 100_000 if args.quick else 1_000_000)
            if args.part in ("all", "timing")
            else {}
        )
    summary = {
        "healthy_false_alarms": score["healthy_false_alarms"],
        "missed": len(score["missed"]) if args.part in ("all", "score") else None,
        **ep,
        **t,
        **{
            f"{k}_{s}": (round(v[k], 3) if isinstance(v[k], float) else v[k])
            for s, v in score["per_symptom"].items()
            for k in ("precision", "recall", "median_delay_steps")
        },
    }
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
