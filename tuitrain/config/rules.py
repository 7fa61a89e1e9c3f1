"""Provides the cross-field checks: mistakes no single field can see, each with its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuitrain.config.derived import Derived
from tuitrain.config.errors import ConfigIssue
from tuitrain.config.schema import MAX_STEPS, METRICS_BY_TASK, TrainConfig


def _is_file(value: str) -> bool:
    try:
        return Path(value).expanduser().is_file()
    except (RuntimeError, OSError, ValueError):  # "~user" with no such user, NUL bytes, too long
        return False


# Mutually exclusive fields: at most one of each pair may be set (differ from its default) in one
# place. Across layers (extends base -> child -> --env overlay -> --set -> the editor) the later
# layer wins: setting one field clears the other coming from an earlier layer (see
# clear_partners); only a single layer that sets both is an error (exclusive_issues). Help texts
# and the JSON Schema are written from this table too, so the three never disagree.
EXCLUSIVE: tuple[tuple[str, str], ...] = (("scheduler.warmup_steps", "scheduler.warmup_ratio"),)

_UNSET = object()


def field_default(path: str) -> Any:
    """The schema default of a dotted field path."""
    model: Any = TrainConfig
    parts = path.split(".")
    for part in parts[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[parts[-1]].get_default(call_default_factory=True)


def _get(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNSET
        node = node[part]
    return node


def is_set(data: Any, path: str) -> bool:
    """Whether plain config data gives `path` a value other than its default."""
    value = _get(data, path)
    return value is not _UNSET and value != field_default(path)


def partner(path: str) -> str | None:
    """The field `path` excludes, if it is one of an EXCLUSIVE pair."""
    for a, b in EXCLUSIVE:
        if path == a:
            return b
        if path == b:
            return a
    return None


def _reset(data: dict, path: str) -> bool:
    """Put `path` back to its default where data holds a value for it; True if it changed."""
    *groups, key = path.split(".")
    node: Any = data
    for part in groups:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or key not in node or node[key] == field_default(path):
        return False
    node[key] = field_default(path)
    return True


def clear_partners(merged: dict, layer: dict) -> list[str]:
    """After `layer` was merged on top of earlier data: the later layer wins, so for every pair
    where `layer` sets one field (and not the other), the other goes back to its default.
    Returns the cleared paths."""
    cleared = []
    for a, b in EXCLUSIVE:
        for mine, other in ((a, b), (b, a)):
            if is_set(layer, mine) and not is_set(layer, other) and _reset(merged, other):
                cleared.append(other)
    return cleared


def clear_partner(data: dict, path: str) -> list[str]:
    """After `path` was set in `data` (one --set, one edit): clear its partner; the cleared paths."""
    other = partner(path)
    if other is None or not is_set(data, path):
        return []
    return [other] if _reset(data, other) else []


def _both_issue(a: str, b: str) -> ConfigIssue:
    return ConfigIssue(
        a,
        f"{a} and {b} are both set in one place, and they exclude each other",
        f"set only one of them; a later layer (an extends child, an --env overlay, --set, the editor) "
        f"that sets {a.rsplit('.', 1)[-1]} or {b.rsplit('.', 1)[-1]} clears the other",
    )


def exclusive_issues(data: Any) -> list[ConfigIssue]:
    """Pairs that one layer (one file, one env overlay, the --set list) sets both of."""
    return [_both_issue(a, b) for a, b in EXCLUSIVE if is_set(data, a) and is_set(data, b)]


def monitor_mode(cfg: TrainConfig) -> str:
    """Resolved early_stopping.mode: auto is max for accuracy, min otherwise."""
    es = cfg.early_stopping
    if es.mode != "auto":
        return es.mode
    return "max" if es.monitor == "val_accuracy" else "min"


def cross_field_issues(cfg: TrainConfig) -> list[ConfigIssue]:
    """Combinations of valid fields that cannot work together (no I/O)."""
    out: list[ConfigIssue] = []
    task = cfg.model.task
    if cfg.peft.method == "qlora" and cfg.peft.bits is None:
        out.append(
            ConfigIssue(
                "peft.bits",
                "qlora quantises the base model but peft.bits is not set",
                "set peft.bits: 4 (or 8)",
            )
        )
    if cfg.peft.method == "qlora" and not cfg.model.name_or_path:
        out.append(
            ConfigIssue(
                "peft.method",
                "qlora needs a pretrained model to quantise",
                "set model.name_or_path, or use peft.method: lora",
            )
        )
    if cfg.early_stopping.monitor not in METRICS_BY_TASK[task]:
        allowed = ", ".join(METRICS_BY_TASK[task])
        out.append(
            ConfigIssue(
                "early_stopping.monitor",
                f"{cfg.early_stopping.monitor} is never produced by a {task} run",
                f"monitor one of: {allowed}",
            )
        )
    if cfg.optimizer.head_lr is not None and task != "seq-cls":
        out.append(
            ConfigIssue(
                "optimizer.head_lr",
                f"head_lr applies to a new classification head, and a {task} model has none",
                "remove optimizer.head_lr, or set model.task: seq-cls",
            )
        )
    out += exclusive_issues(cfg.model_dump())  # a parsed dict is a single layer
    if cfg.model.tokenizer == "bytes" and cfg.model.name_or_path:
        out.append(
            ConfigIssue(
                "model.tokenizer",
                "bytes tokenisation is for models built from scratch; a pretrained model has its own vocabulary",
                "set model.tokenizer: auto",
            )
        )
    if not cfg.model.name_or_path and cfg.model.tokenizer == "auto":
        out.append(
            ConfigIssue(
                "model.tokenizer",
                "a model built from scratch has no tokenizer of its own",
                "set model.tokenizer: bytes, or model.name_or_path to a pretrained model",
            )
        )
    if (
        not cfg.model.name_or_path
        and cfg.model.arch.max_position_embeddings < cfg.data.max_seq_length
    ):
        out.append(
            ConfigIssue(
                "model.arch.max_position_embeddings",
                f"{cfg.model.arch.max_position_embeddings} is shorter than data.max_seq_length ({cfg.data.max_seq_length})",
                f"set it to at least {cfg.data.max_seq_length}",
            )
        )
    if not cfg.model.name_or_path:
        fam = cfg.model.arch.type
        if task == "causal-lm" and fam == "bert":
            out.append(
                ConfigIssue(
                    "model.arch.type",
                    "bert is an encoder and cannot be a causal LM",
                    "use gpt2 or llama for causal-lm",
                )
            )
    if cfg.data.source == "file" and not cfg.data.train_file:
        out.append(
            ConfigIssue(
                "data.train_file",
                "no training data given",
                "set data.train_file (jsonl/csv/txt), or data.source: python-stdlib",
            )
        )
    if cfg.data.source == "python-stdlib" and task != "causal-lm":
        out.append(
            ConfigIssue(
                "data.source",
                "the python-stdlib corpus has no labels",
                "use data.source: file with a label column for seq-cls",
            )
        )
    if (
        cfg.scheduler.name == "plateau"
        and cfg.training.eval_every is None
        and cfg.training.epochs < 2
    ):
        out.append(
            ConfigIssue(
                "scheduler.name",
                "plateau cuts the LR between evaluations, and this run evaluates only once",
                "set training.eval_every",
            )
        )
    if cfg.launch.num_machines > 1 and not cfg.launch.main_process_ip:
        out.append(
            ConfigIssue(
                "launch.main_process_ip",
                "a multi-node run needs the address of machine 0",
                "set launch.main_process_ip",
            )
        )
    if cfg.launch.machine_rank >= cfg.launch.num_machines:
        out.append(
            ConfigIssue(
                "launch.machine_rank",
                f"rank {cfg.launch.machine_rank} does not exist with {cfg.launch.num_machines} machine(s)",
                f"use 0..{cfg.launch.num_machines - 1}",
            )
        )
    if cfg.launch.num_processes % cfg.launch.num_machines:
        out.append(
            ConfigIssue(
                "launch.num_processes",
                "num_processes counts all processes and must be a multiple of num_machines",
                "set it to processes-per-machine x num_machines",
            )
        )
    if cfg.launch.accelerate_config and not _is_file(cfg.launch.accelerate_config):
        out.append(
            ConfigIssue(
                "launch.accelerate_config",
                f"{cfg.launch.accelerate_config}: no such file",
                "run `accelerate config` or clear the field",
            )
        )
    return out


def derived_issues(cfg: TrainConfig, d: Derived) -> list[ConfigIssue]:
    """Mistakes that show only once step counts are known."""
    out: list[ConfigIssue] = []
    if d.total_steps is not None and d.total_steps > MAX_STEPS:
        out.append(
            ConfigIssue(
                "training.epochs",
                f"training would run {d.total_steps:,} optimizer steps, over the bound of "
                f"{MAX_STEPS:,}",
                f"set training.max_steps (at most {MAX_STEPS:,}) or fewer training.epochs",
            )
        )
    if d.total_steps is not None and d.warmup_steps is not None and d.warmup_steps >= d.total_steps:
        fix = f"set scheduler.warmup_steps below {d.total_steps} (10% would be {max(1, d.total_steps // 10)})"
        out.append(
            ConfigIssue(
                "scheduler.warmup_steps",
                f"warmup ({d.warmup_steps} steps) is as long as training ({d.total_steps} steps)",
                fix,
            )
        )
    return out


def warnings(cfg: TrainConfig, d: Derived) -> list[str]:
    """Legal but suspicious settings, shown as advice (DOMAIN.md ranges are guidance, not limits)."""
    out: list[str] = []
    if cfg.training.mixed_precision == "fp16" and cfg.launch.cpu:
        out.append("training.mixed_precision: fp16 on CPU is slow or unsupported; use no (or bf16)")
    if cfg.peft.method != "none" and not 0.5 <= cfg.peft.alpha / cfg.peft.r <= 4:
        out.append(
            f"peft.alpha: alpha/r = {cfg.peft.alpha / cfg.peft.r:.2f}; about 2 is typical (alpha ~ 2 x r)"
        )
    if cfg.model.name_or_path and cfg.optimizer.lr > 1e-3 and cfg.peft.method == "none":
        out.append(
            f"optimizer.lr: {cfg.optimizer.lr:g} is high for fine-tuning a pretrained model (1e-5..5e-5 typical)"
        )
    if cfg.model.task == "seq-cls" and cfg.generation.prompts:
        out.append("generation.prompts: ignored for seq-cls")
    g = cfg.generation
    if g.temperature == 0 and (
        g.top_k != field_default("generation.top_k") or g.top_p != field_default("generation.top_p")
    ):
        out.append(
            "generation.top_k/top_p: used only when sampling; generation.temperature is 0 (greedy),"
            " so set a temperature > 0 (e.g. 0.8) to sample with them"
        )
    if (
        d.total_steps is not None
        and cfg.training.eval_every
        and cfg.training.eval_every > d.total_steps
    ):
        out.append(
            f"training.eval_every: {cfg.training.eval_every} is beyond the last step ({d.total_steps}); only the final eval runs"
        )
    if (
        cfg.early_stopping.enabled
        and cfg.training.eval_every is None
        and cfg.training.epochs < cfg.early_stopping.patience
    ):
        out.append(
            "early_stopping.patience: with one eval per epoch, it can never trigger; set training.eval_every"
        )
    return out
