"""Provides the sweep spec: a base config, a search space over dotted config fields, the method,
objective, pruning and parallelism, validated with errors that name the field and the fix."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuitrain.config.errors import ConfigError, ConfigIssue

Scalar = bool | int | float | str | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    """One searched field: choice (a list of values), uniform, loguniform or int."""

    type: Literal["choice", "uniform", "loguniform", "int"] = Field(
        description="Distribution of the field's values."
    )
    values: list[Scalar] | None = Field(
        None, description="choice: the values to try (numbers, strings, booleans)."
    )
    low: float | None = Field(None, description="uniform/loguniform/int: smallest value.")
    high: float | None = Field(
        None, description="uniform/loguniform/int: largest value (included)."
    )
    step: float | None = Field(
        None, gt=0, description="int: spacing of values (default 1); uniform: optional spacing."
    )
    log: bool = Field(False, description="int: sample on a log scale.")
    num: int | None = Field(
        None,
        ge=2,
        le=1000,
        description="grid method with uniform/loguniform: number of points between low and high.",
    )

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        if self.type == "choice":
            if not self.values:
                raise ValueError(
                    "a choice needs a non-empty `values:` list, e.g. values: [1e-4, 1e-3]"
                )
            return self
        if self.values is not None:
            raise ValueError(f"`values:` belongs to type choice, not {self.type}; use low/high")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs both low: and high:")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(
                f"loguniform needs low > 0 (got {self.low:g}); use uniform for ranges that include 0"
            )
        if self.type == "int":
            if (
                self.low != int(self.low)
                or self.high != int(self.high)
                or (self.step is not None and self.step != int(self.step))
            ):
                raise ValueError("an int parameter needs whole-number low, high and step")
            if self.log and self.low < 1:
                raise ValueError("an int parameter with log: true needs low >= 1")
        return self

    def grid_values(self) -> list[Any]:
        """The finite list of values this parameter takes in a grid."""
        if self.type == "choice":
            return list(self.values or [])
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(lo), int(hi) + 1, step))
        if self.step is not None:
            n = int(math.floor((hi - lo) / self.step + 1e-9)) + 1
            return [lo + i * self.step for i in range(n)]
        if self.num is None:
            raise ValueError("a grid over a continuous range needs `num:` (points) or `step:`")
        if self.type == "loguniform":
            a, b = math.log(lo), math.log(hi)
            return [math.exp(a + (b - a) * i / (self.num - 1)) for i in range(self.num)]
        return [lo + (hi - lo) * i / (self.num - 1) for i in range(self.num)]


class Objective(_Strict):
    """What the sweep optimises: a metric of each trial run, minimised or maximised."""

    metric: str = Field(
        "val_loss",
        min_length=1,
        description="Metric name as logged by the trainer (val_loss, val_accuracy, loss, ...).",
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="min or max; auto: max for accuracy-like metrics, else min."
    )
    reduce: Literal["best", "last"] = Field(
        "best", description="A trial's value: the best logged value of the metric, or the last."
    )

    def direction(self) -> str:
        """'minimize' or 'maximize' (Optuna's words)."""
        mode = self.mode
        if mode == "auto":
            mode = (
                "max" if any(k in self.metric for k in ("accuracy", "acc", "f1", "auc")) else "min"
            )
        return "maximize" if mode == "max" else "minimize"


class Pruning(_Strict):
    """Median pruning from a trial's live objective metric (Optuna's MedianPruner), and the
    opt-in doctor pruning of diverging trials."""

    enabled: bool | None = Field(
        None,
        description="Stop trials whose metric is worse than the median of earlier trials at the same step; default: on for random/tpe, off for grid.",
    )
    n_startup_trials: int = Field(
        2, ge=0, description="Finished trials needed before any trial is pruned."
    )
    n_warmup_steps: int = Field(0, ge=0, description="Steps of each trial that are never pruned.")
    interval_steps: int = Field(1, ge=1, description="Check pruning every N reported steps.")
    grace_s: float = Field(
        60.0,
        gt=0,
        description="Seconds a pruned trial gets to stop gracefully before it is killed.",
    )
    doctor: bool = Field(
        False,
        description="Also stop a trial the doctor finds critically diverging (critical "
        "exploding_gradients, an unrecovered loss_spike, a NaN/inf loss), checked on each poll of "
        "a running trial; independent of `enabled` (median pruning). Its run ends `pruned`, with "
        "the evidence as the reason.",
    )


class SweepSpec(_Strict):
    """A sweep file: `base:` config plus `space:` and how to search it."""

    name: str | None = Field(
        None, max_length=120, description="Sweep name; default: the sweep file's name."
    )
    base: str | None = Field(None, description="Base config file, relative to the sweep file.")
    config: dict | None = Field(
        None, description="Inline base config (instead of, or on top of, base:)."
    )
    env: str | None = Field(None, description="Overlay from the base config's envs: to apply.")
    set: list[str] = Field(
        default_factory=list,
        description="Overrides for every trial, e.g. ['training.max_steps=50'].",
    )
    method: Literal["grid", "random", "tpe"] = Field(
        "tpe",
        description="grid: every combination; random: independent samples; tpe: Optuna's Bayesian TPE.",
    )
    space: dict[str, ParamSpec] = Field(
        description="Dotted config field -> distribution, e.g. optimizer.lr: {type: loguniform, low: 1e-5, high: 1e-3}."
    )
    objective: Objective = Field(
        default_factory=Objective, description="Metric to optimise and its direction."
    )
    n_trials: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Trials to run (this process); default: the grid size for grid, else 10.",
    )
    parallel: int | Literal["auto"] = Field(
        1, description="Trials at once; auto: one per GPU slot (or 1 on CPU)."
    )
    gpus_per_trial: int = Field(
        1,
        ge=1,
        le=1024,
        description="GPUs given to each trial through CUDA_VISIBLE_DEVICES (when GPUs exist).",
    )
    seed: int | None = Field(
        0, ge=0, description="Sampler seed (random/tpe); empty: nondeterministic."
    )
    pruning: Pruning = Field(default_factory=Pruning, description="Median pruning of poor trials.")
    storage: str | None = Field(
        None,
        description="Optuna storage URL (e.g. postgresql://...); default: sqlite file sweeps.optuna.db in the runs dir.",
    )
    study_name: str | None = Field(
        None,
        description="Optuna study name; the same name and storage on several machines share one study.",
    )
    enqueue: list[dict[str, Scalar]] = Field(
        default_factory=list, description="Parameter sets to try first (known good points)."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        # `lr: [1e-4, 1e-3]` is a choice; `objective: val_accuracy` names only the metric.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        space = data.get("space")
        if isinstance(space, dict):
            data["space"] = {
                k: ({"type": "choice", "values": v} if isinstance(v, list) else v)
                for k, v in space.items()
            }
        if isinstance(data.get("objective"), str):
            data["objective"] = {"metric": data["objective"]}
        if isinstance(data.get("pruning"), bool):
            data["pruning"] = {"enabled": data["pruning"]}
        return data

    @model_validator(mode="after")
    def _whole(self) -> SweepSpec:
        if not self.space:
            raise ValueError("space: is empty; add at least one field to search, e.g. optimizer.lr")
        if self.base is None and self.config is None:
            raise ValueError(
                "give a base config: `base: demo.yaml` (relative to the sweep file) or an inline `config:`"
            )
        if isinstance(self.parallel, int) and self.parallel < 1:
            raise ValueError("parallel must be at least 1 (or auto)")
        from tuitrain.config.rules import partner

        for path in self.space:
            other = partner(path)
            if other in self.space and path < other:
                # Each trial sets both; the later --set would silently clear the earlier one.
                raise ValueError(
                    f"space: samples both {path} and {other}, which exclude each other (a trial "
                    f"can set only one); search one of them"
                )
        return self

    def prune_enabled(self) -> bool:
        """Whether pruning is on (default: on except for grid)."""
        return self.pruning.enabled if self.pruning.enabled is not None else self.method != "grid"

    def grid_size(self) -> int:
        """Number of combinations of the grid."""
        return math.prod(len(p.grid_values()) for p in self.space.values())


def _issue(err: dict, file: str) -> ConfigIssue:
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc)
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    fix = ""
    if kind == "extra_forbidden":
        model: type[BaseModel] = SweepSpec
        if loc and loc[0] == "space":
            model = ParamSpec
        elif loc and loc[0] in ("objective", "pruning"):
            model = Objective if loc[0] == "objective" else Pruning
        known = list(model.model_fields)
        guess = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        msg = "unknown key"
        fix = f"did you mean {guess[0]!r}?" if guess else f"known keys: {', '.join(known)}"
    elif kind == "literal_error":
        fix = f"use one of {err.get('ctx', {}).get('expected', '')}"
    elif kind == "missing":
        fix = "add it"
    return ConfigIssue(path, msg, fix, file=file)


def parse_spec(data: dict, file: str = "<sweep>") -> SweepSpec:
    """Validate sweep data into a SweepSpec; every problem is reported at once."""
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_issue(e, file) for e in exc.errors()]) from None


def read_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (YAML or JSON)."""
    from tuitrain.config.loader import read_file

    data, _ = read_file(path)
    return parse_spec(data, str(path))
