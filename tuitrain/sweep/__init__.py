"""Provides hyperparameter sweeps: grid, random and Optuna TPE search over config fields, each
trial an ordinary run linked by sweep_id. Exports lazily: importing this never loads Optuna."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "SweepSpec": "tuitrain.sweep.spec",
    "read_spec": "tuitrain.sweep.spec",
    "parse_spec": "tuitrain.sweep.spec",
    "SweepRunner": "tuitrain.sweep.runner",
    "SweepRecord": "tuitrain.sweep.records",
    "TrialRecord": "tuitrain.sweep.records",
    "SweepNotFound": "tuitrain.sweep.records",
    "list_sweeps": "tuitrain.sweep.records",
    "get_sweep": "tuitrain.sweep.records",
    "is_sweep": "tuitrain.sweep.records",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
