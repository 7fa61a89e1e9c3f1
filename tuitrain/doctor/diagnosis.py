"""Provides the doctor's record types: Diagnosis, Action, severities and the remedy texts of DOMAIN.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}

SYMPTOMS = (
    "exploding_gradients",
    "loss_spike",
    "oscillation",
    "slow_convergence",
    "late_stall",
    "overfitting",
    "underfitting",
    "clipping_saturated",
    "stalled",
    "throughput_drop",
    "low_gpu_util",
    "repetitive_answers",
)

# The remedy column of DOMAIN.md's symptom table, in words the user reads next to the evidence.
REMEDIES = {
    "exploding_gradients": "clip gradients (training.max_grad_norm 0.5-1.0) and lower the LR (e.g. halve it)",
    "loss_spike": "lower the LR (e.g. halve it) and clip gradients; if it does not recover, go back to the last checkpoint",
    "oscillation": "lower the LR (e.g. halve it) or use a larger batch",
    "slow_convergence": "add warmup, check the initialisation, raise the LR (e.g. x2)",
    "late_stall": "decay the LR (cosine to ~1e-5); halving it now helps a constant schedule",
    "overfitting": "stop early and keep the best weights; more weight decay or dropout, fewer epochs next time",
    "underfitting": "more epochs, a larger model, a higher LR",
    "clipping_saturated": "clipping is doing the LR's job: raise training.max_grad_norm or lower the LR (next run)",
    "stalled": "the process is alive but makes no steps: check train.log (data loading, a hung collective); stop it if it does not move",
    "throughput_drop": "check for other jobs on the machine, data loading (data.num_workers), thermal throttling or too frequent checkpoints",
    "repetitive_answers": "lower the LR or train fewer epochs, and take the answers of the best evaluation's checkpoint (training.save_best); check that the chat template ends each answer (its end marker / eos), so the model learns where to stop",
    "low_gpu_util": "the GPUs wait for work: more data.num_workers if the step time is data wait, a larger batch.size, bf16 mixed precision; check for other jobs on the machine",
}


@dataclass(frozen=True)
class Action:
    """What the doctor offers to do: a steering command (`steerable`) or advice for the next run."""

    kind: str  # scale_lr | stop | checkpoint | config | rollback (tuitrain.doctor.rollback)
    payload: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # how it reads: "scale_lr 0.5"
    steerable: bool = True  # False: not a live command (e.g. max_grad_norm is fixed for a run)


@dataclass(frozen=True)
class Diagnosis:
    """One recognised symptom: id, severity, the step it started at, evidence, remedy, action."""

    id: str
    severity: str
    step: int | None
    evidence: str
    remedy: str
    action: Action | None = None
    values: dict[str, Any] = field(default_factory=dict)  # the evidence as numbers

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of `tuitrain doctor --format json`."""
        out = asdict(self)
        if self.action is None:
            out["action"] = None
        return out

    @property
    def rank(self) -> int:
        """0 info, 1 warning, 2 critical."""
        return RANK[self.severity]


def scale_lr(factor: float) -> Action:
    """A scale_lr command."""
    return Action("scale_lr", {"factor": factor}, f"scale_lr {factor:g}")


def stop_restore_best(best_step: int | None) -> Action:
    """A stop command that keeps the best weights (the trainer restores them at the end)."""
    label = "stop" + (f" (restore best @{best_step})" if best_step is not None else "")
    return Action("stop", {"restore_best": True}, label)


def most_severe(diags: list[Diagnosis]) -> Diagnosis | None:
    """The diagnosis to show first: highest severity, then the earliest start."""
    ordered = sort(diags)
    return ordered[0] if ordered else None


def sort(diags: list[Diagnosis]) -> list[Diagnosis]:
    """Most severe first, then by start step, then id (a stable order for screens and JSON)."""
    return sorted(
        diags, key=lambda d: (-d.rank, d.step if d.step is not None else -1, SYMPTOMS.index(d.id))
    )
