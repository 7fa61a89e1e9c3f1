"""Provides the Optuna side of a sweep: study (sampler, median pruner, storage), distributions,
and parameter importance. Optuna is the optional extra `sweep`, imported only here."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from tuitrain.sweep.spec import ParamSpec, SweepSpec

OPTUNA_DB = "sweeps.optuna.db"


class OptunaMissing(RuntimeError):
    """Optuna is not installed; sweeps need it."""


def optuna_module() -> Any:
    """Import optuna or explain how to get it."""
    try:
        import optuna
    except ImportError:
        raise OptunaMissing(
            "sweeps need Optuna: pip install 'tuitrain[sweep]' (or pip install optuna)"
        ) from None
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


def default_storage(runs_dir: Path) -> str:
    """The study storage when none is given: an SQLite file beside (not inside) tuitrain.db."""
    return f"sqlite:///{(Path(runs_dir) / OPTUNA_DB).resolve()}"


def storage_url(value: str | None, runs_dir: Path) -> str:
    """The storage URL to use: the default file, the URL given, or `env:VAR` read from the
    environment (keeps database passwords out of sweep files)."""
    if not value:
        return default_storage(runs_dir)
    if value.startswith("env:"):
        var = value[4:]
        url = os.environ.get(var)
        if not url:
            raise ValueError(
                f"storage is {value} but the environment variable {var} is not set; export {var}=postgresql://..."
            )
        return url
    return value


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for records and screens."""
    return re.sub(r"(//[^:/@]+:)[^/]*@", r"\1***@", url)


def distribution(p: ParamSpec) -> Any:
    """The Optuna distribution of one parameter."""
    optuna = optuna_module()
    d = optuna.distributions
    if p.type == "choice":
        return d.CategoricalDistribution(list(p.values or []))
    if p.type == "int":
        return d.IntDistribution(int(p.low), int(p.high), step=int(p.step or 1), log=p.log)  # type: ignore[arg-type]
    if p.type == "loguniform":
        return d.FloatDistribution(float(p.low), float(p.high), log=True)  # type: ignore[arg-type]
    return d.FloatDistribution(float(p.low), float(p.high), step=p.step)  # type: ignore[arg-type]


def grid_distribution(p: ParamSpec) -> Any:
    """For grid: a categorical over the grid points (a continuous range with num: points)."""
    optuna = optuna_module()
    return optuna.distributions.CategoricalDistribution(p.grid_values())


def _ask_tell_grid(optuna: Any) -> type:
    """GridSampler usable with ask/tell: once the grid is exhausted it calls study.stop(), which
    only works inside study.optimize(); the runner caps n_trials at the grid size instead."""

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            try:
                super().after_trial(study, trial, state, values)
            except RuntimeError as exc:
                if "Study.stop" not in str(exc):
                    raise

    return AskTellGridSampler


def create_study(spec: SweepSpec, storage: str, study_name: str) -> Any:
    """A new or existing (same name + storage: shared with other machines) Optuna study."""
    optuna = optuna_module()
    if spec.method == "grid":
        sampler = _ask_tell_grid(optuna)(
            {k: p.grid_values() for k, p in spec.space.items()}, seed=spec.seed
        )
    elif spec.method == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=spec.seed, n_startup_trials=min(10, max(2, (spec.n_trials or 10) // 3))
        )
    pr = spec.pruning
    if spec.prune_enabled():
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=pr.n_startup_trials,
            n_warmup_steps=pr.n_warmup_steps,
            interval_steps=pr.interval_steps,
        )
    else:
        pruner = optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        sampler=sampler,
        pruner=pruner,
        direction=spec.objective.direction(),
        load_if_exists=True,
    )
    # A fresh study takes every listed point (repeats included: a user may want a seed check);
    # joining a shared study skips points some machine already queued.
    fresh = not study.get_trials(deepcopy=False)
    for params in spec.enqueue:
        study.enqueue_trial(params, skip_if_exists=not fresh)
    return study


def distributions(spec: SweepSpec) -> dict[str, Any]:
    """name -> distribution for study.ask()."""
    if spec.method == "grid":
        return {k: grid_distribution(p) for k, p in spec.space.items()}
    return {k: distribution(p) for k, p in spec.space.items()}


def importance(study: Any) -> dict[str, float]:
    """Parameter importance (fANOVA) when Optuna can compute it (2+ finished trials, >1 value)."""
    optuna = optuna_module()
    done = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
    ]
    if len(done) < 2:
        return {}
    try:
        # 16 trees instead of fANOVA's default 64: same ranking here, a quarter of the CPU.
        evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=16, seed=0)
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in imp.items()}
