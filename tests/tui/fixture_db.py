"""Provides deterministic runs databases for TUI tests and benchmarks, built with the Store API."""

from __future__ import annotations

import math
import os
from pathlib import Path

from tuitrain.store import Store

# The clock the app is given in snapshot tests; fixture runs are pinned relative to it.
NOW = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC


def _cfg(name: str, lr: float, total: int) -> dict:
    return {
        "run": {"name": name, "seed": 42},
        "optimizer": {"name": "adamw", "lr": lr, "weight_decay": 0.01},
        "scheduler": {"name": "cosine", "warmup_ratio": 0.05},
        "batch": {"size": 16, "grad_accum": 1},
        "training": {"max_steps": total, "eval_every": 50},
    }


def _curve(step: int, total: int, lr: float, scale: float) -> dict[str, float]:
    """Smooth, deterministic training metrics with a little wiggle."""
    warm = max(1, total // 20)
    f = (
        step / warm
        if step < warm
        else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    )
    loss = 1.2 + scale * math.exp(-step / (total / 4)) + 0.08 * math.sin(step / 3.0)
    return {
        "loss": loss,
        "lr": lr * f,
        "grad_norm": 0.6 + 0.9 * math.exp(-step / 60) + 0.1 * math.cos(step / 5.0),
        "epoch": step / 464,
        "tokens_per_s": 10240.0 + 50 * math.sin(step),
        "samples_per_s": 80.0,
    }


def add_run(
    store: Store,
    name: str,
    lr: float,
    total: int,
    steps: int,
    scale: float = 3.0,
    log_every: int = 1,
) -> str:
    """A run with `steps` logged steps (val every 50) of a `total`-step plan; returns its id."""
    derived = {
        "effective_batch": 16,
        "total_steps": total,
        "warmup_steps": total // 20,
        "scaled_lr": lr,
    }
    run = store.create_run(_cfg(name, lr, total), derived, name=name)
    t0 = NOW - 3600
    rows = []
    for s in range(log_every, steps + 1, log_every):
        for k, v in _curve(s, total, lr, scale).items():
            rows.append((s, k, v, t0 + s))
        if s % 50 == 0:
            rows.append((s, "val_loss", 1.3 + scale * math.exp(-s / (total / 4)) * 1.1, t0 + s))
    if rows:
        store.log_metrics(run.id, rows)
    store.add_event(run.id, "started", f"training {name}: {total} steps", 0)
    for s in range(50, steps + 1, 50):
        store.add_event(
            run.id, "eval", f"val_loss {1.3 + scale * math.exp(-s / (total / 4)) * 1.1:.4f}", s
        )
    return run.id


def pin_times(
    store: Store, run_id: str, created: float, started: float | None, ended: float | None
) -> None:
    """Test-only: pin a run's timestamps so elapsed and start-time text is stable in snapshots."""
    # Committed at once (the store's connection may be shared or per thread).
    conn = store.conn
    with conn:
        conn.execute(
            "UPDATE runs SET created = ?, started = ?, ended = ? WHERE id = ?",
            (created, started, ended, run_id),
        )


def build(runs_dir: Path) -> dict[str, str]:
    """Runs: completed, early-stopped, crashed, and one running (this process's pid, fresh heartbeat)."""
    store = Store(runs_dir)
    ids: dict[str, str] = {}
    ids["completed"] = add_run(store, "baseline", 1e-3, 400, 400)
    store.mark_started(ids["completed"], 999_999_999, "fixture-host")
    store.set_status(
        ids["completed"],
        "completed",
        "finished",
        summary={
            "best_metric": "val_loss",
            "best_value": 1.4273,
            "best_step": 400,
            "final_val_loss": 1.4273,
            "best_val_loss": 1.4273,
            "steps": 400,
            "total_steps": 400,
            "wall_time_s": 512.0,
            "tokens_per_s": 10240.0,
        },
    )
    pin_times(store, ids["completed"], NOW - 7200, NOW - 7190, NOW - 6678)

    ids["early"] = add_run(store, "low-lr", 1e-4, 400, 250, scale=3.4)
    store.mark_started(ids["early"], 999_999_999, "fixture-host")
    store.set_status(
        ids["early"],
        "early_stopped",
        "val_loss did not improve for 3 evals",
        summary={
            "best_metric": "val_loss",
            "best_value": 1.6021,
            "best_step": 150,
            "final_val_loss": 1.6412,
            "best_val_loss": 1.6021,
            "steps": 250,
            "total_steps": 400,
            "wall_time_s": 330.0,
            "tokens_per_s": 9950.0,
        },
    )
    pin_times(store, ids["early"], NOW - 5400, NOW - 5390, NOW - 5060)

    ids["crashed"] = add_run(store, "high-lr", 3e-2, 400, 90, scale=2.0)
    store.mark_started(ids["crashed"], 999_999_999, "fixture-host")
    store.set_status(ids["crashed"], "crashed", "process 4242 is gone without a final status")
    pin_times(store, ids["crashed"], NOW - 3000, NOW - 2990, NOW - 2880)

    ids["running"] = add_run(store, "warmup-10", 5e-4, 400, 160, scale=2.8)
    # This process's pid on this host, with a fresh heartbeat: the store reads it as running.
    store.mark_started(ids["running"], os.getpid())
    pin_times(store, ids["running"], NOW - 200, NOW - 190, None)
    store.close()
    return ids


def add_set_lr(runs_dir: Path, run_id: str, lr: float, step: int) -> int:
    """A set_lr command that the 'trainer' applied at `step` (as the trainer would ack it)."""
    store = Store(runs_dir)
    cid = store.send_command(run_id, "set_lr", {"lr": lr})
    store.claim_commands(run_id)
    store.ack_command(cid, step, f"LR set to {lr:g} at step {step}")
    store.close()
    return cid


# Generation samples (tuitrain.store.samples): what the model answered at each evaluation. The
# baseline learns the answers, then (past its best step by val_loss, 400) falls into repetition;
# low-lr is best at 150 and stays sane.
SAMPLE_PROMPTS = [
    ("val:0", "val", "What does json.dumps do?", "It serialises a Python object to a JSON string."),
    ("val:1", "val", "What does os.path.join do?",
     "Join two or more path components, inserting a separator as needed."),
    ("prompt:0", "prompt", "Complete: def add(a, b):", None),
]  # fmt: skip
SAMPLE_OUTPUTS = {
    "baseline": {
        50: ("Rend|> Rend|> Rend|> Rend|> Rend|>", "Rend|> Rend|> Rend|>", "    re re re re"),
        100: ("It returns the the object to a string.", "Join two path the the components.",
              "    return a"),
        150: ("It serialises a Python object to a string.", "Join two or more path components.",
              "    return a + b"),
        200: ("It serialises a Python object to a JSON string.",
              "Join two or more path components, inserting a separator.", "    return a + b"),
        250: ("It serialises a Python object to a JSON string.",
              "Join two or more path components, inserting a separator as needed.",
              "    return a + b"),
        300: ("Return turn a a a a the object to a JSON string.",
              "Join two or more path path path components components.", "    return a + b + b"),
        350: ("Return turn a a a a the the a a a a", "Join join join join the the the the",
              "    return a + b + b + b + b"),
        400: ("Return turn a a a a the the a a a a a a", "Join join join join the the the the the",
              "    return return return return"),
    },
    "low-lr": {
        50: ("Rend|> Rend|> Rend|> Rend|> Rend|>", "Rend|> Rend|>", "    re re re"),
        100: ("It returns a Python object.", "Join path components.", "    return a"),
        150: ("It serialises a Python object to a JSON string.",
              "Join two or more path components, inserting a separator as needed.",
              "    return a + b"),
        200: ("It serialises a Python object to a JSON string.",
              "Join two or more path components, inserting a separator.", "    return a + b"),
        250: ("It serialises an object to a JSON string.", "Join two or more path components.",
              "    return a + b"),
    },
    "warmup-10": {
        50: ("Rend|> Rend|> Rend|>", "Rend|>", "    re re"),
        100: ("It returns the object.", "Join the path.", "    return"),
        150: ("It serialises a Python object to a string.", "Join two path components.",
              "    return a + b"),
    },
    "high-lr": {50: ("the the the the the the the the", "the the the the", "    the the the")},
}  # fmt: skip


def sample_scores(output: str, reference: str | None) -> dict[str, float | None]:
    """Fixture scores, by the rules of tuitrain.samples.scores written out (so the fixture holds
    still when the scorer is tuned): exact match and rapidfuzz ratio / 100 of the normalised
    texts, and the share of repeated character 5-grams of the answer (whitespace collapsed)."""
    from rapidfuzz import fuzz

    norm = " ".join(output.split())
    grams = [norm[i : i + 5] for i in range(len(norm) - 4)]
    rep = round(1 - len(set(grams)) / len(grams), 3) if len(grams) > 1 else 0.0
    if reference is None:
        return {"exact_match": None, "similarity": None, "repetition": rep}
    out, ref = norm.casefold(), " ".join(reference.split()).casefold()
    return {
        "exact_match": 1.0 if out == ref else 0.0,
        "similarity": round(fuzz.ratio(out, ref) / 100, 3),
        "repetition": rep,
    }


def sample_rows(step: int, outputs: tuple[str, ...]) -> list[dict]:
    """One evaluation's sample rows (greedy decoding) for SAMPLE_PROMPTS."""
    rows = []
    for (pid, source, prompt, ref), out in zip(SAMPLE_PROMPTS, outputs, strict=True):
        rows.append(
            {
                "step": step,
                "prompt_id": pid,
                "source": source,
                "prompt": prompt,
                "messages": [{"role": "user", "content": prompt}],
                "reference": ref,
                "output": out,
                "tokens": 2 * len(out.split()),
                "seconds": 0.25,
                "settings": {"do_sample": False, "max_new_tokens": 64},
                "created": NOW - 3600 + step,
                **sample_scores(out, ref),
            }
        )
    return rows


def add_samples(runs_dir: Path, ids: dict[str, str]) -> None:
    """Samples at each evaluation of the fixture runs built by build() (SAMPLE_OUTPUTS)."""
    names = {
        "completed": "baseline",
        "early": "low-lr",
        "running": "warmup-10",
        "crashed": "high-lr",
    }
    with Store(runs_dir) as store:
        for key, name in names.items():
            for step, outputs in SAMPLE_OUTPUTS[name].items():
                store.samples.add(ids[key], sample_rows(step, outputs))
