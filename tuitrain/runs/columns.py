"""Provides the rules the runs list and `tuitrain ls` share for two columns: a run's best monitored
value (read from the logged metrics while a run is live: its summary is written only at the end,
and after a resume it still holds the previous attempt's) and a name cut in the middle."""

from __future__ import annotations

import math
from typing import Any

from rich.cells import cell_len

DEFAULT_METRIC = "val_loss"


def monitored(run: Any) -> tuple[str, str]:
    """(metric, "min" | "max"): the summary's best_metric, else early_stopping.monitor."""
    summary = run.summary or {}
    cfg = run.config if isinstance(run.config, dict) else {}
    es = cfg.get("early_stopping") if isinstance(cfg.get("early_stopping"), dict) else {}
    metric = summary.get("best_metric") or es.get("monitor") or DEFAULT_METRIC
    return str(metric), "max" if "accuracy" in str(metric) else "min"


def best_value(store: Any, run: Any) -> tuple[str, float | None]:
    """(metric, best value or None). An ended run's summary holds its final trainer's best; a
    live run (or one that ended without one) gets the best of that and every logged value."""
    metric, mode = monitored(run)
    pick = max if mode == "max" else min
    found = [v for v in [(run.summary or {}).get("best_value")] if _ok(v)]
    if run.terminal and found:
        return metric, found[0]
    # One bucket over the whole run: its min and max (cost independent of the run's length).
    for _step, lo, hi, _last in store.series(run.id, metric, buckets=1):
        v = hi if mode == "max" else lo
        if _ok(v):
            found.append(v)
    return metric, (pick(found) if found else None)


def _ok(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def cut_middle(text: str, width: int) -> str:
    """`text` in at most `width` cells with … in the middle, keeping both ends (sweep trials and
    branches differ at the end): 'walk-sweep-a1b2-t002' at 12 -> 'walk-sw…t002'."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = -(-(width - 1) * 3 // 5)  # a little more of the start than of the end
    start = end = ""
    for ch in text:
        if cell_len(start + ch) > head:
            break
        start += ch
    for ch in reversed(text):
        if cell_len(ch + end) > width - 1 - cell_len(start):
            break
        end = ch + end
    return start + "…" + end
