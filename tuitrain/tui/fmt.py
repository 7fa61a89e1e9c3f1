"""Provides the text formatting of run values shared by the screens (durations, LRs, status)."""

from __future__ import annotations

import math
import os
import time

from tuitrain.runs.liveness import duration as duration  # 1h02m, 4m05s: as the stall label says

STATUS_STYLE = {
    "queued": "dim",
    "running": "bold green",
    "completed": "cyan",
    "early_stopped": "cyan",
    "stopped": "yellow",
    "failed": "bold red",
    "diverged": "bold red",
    "crashed": "bold red",
    "pruned": "dim yellow",
}


def number(value: float | None, digits: int = 4) -> str:
    """Compact number: 2.345, 5e-05, 1.2e+04; '-' when missing."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def lr(value: float | None) -> str:
    """Learning rates in scientific notation (what people type)."""
    return "-" if value is None else f"{value:.3g}" if value >= 0.01 else f"{value:.2e}"


def clock(ts: float | None) -> str:
    """Local start time as month-day hour:minute."""
    if not ts:
        return "-"
    return time.strftime("%m-%d %H:%M", time.localtime(ts))


def no_color(style: str) -> str:
    """The style without its colours when NO_COLOR is set, keeping bold/italic/underline/reverse.

    Textual greys colours by luminance under NO_COLOR, and 'bold red' on the zebra rows came
    out grey 237 on 235, so 'crashed' could not be read; every status/state colour goes
    through here."""
    if not os.environ.get("NO_COLOR"):
        return style
    return " ".join(w for w in style.split() if w in ("bold", "italic", "underline", "reverse"))


def status_style(text: str) -> str:
    """The style of a run status (colourless under NO_COLOR)."""
    return no_color(STATUS_STYLE.get(text, ""))


def styled(style: str, text: str) -> str:
    """Rich markup of (already escaped) text in a status/state style, colourless under NO_COLOR;
    plain text when no style is left ('[]x[/]' is a markup error)."""
    style = no_color(style)
    return f"[{style}]{text}[/]" if style else text


def status(text: str) -> str:
    """Rich markup for a run status."""
    return styled(STATUS_STYLE.get(text, ""), text)


def progress(step: int | None, total: int | None) -> str:
    """'120/400 30%' or just the step when the total is unknown."""
    if step is None:
        return "-"
    if not total:
        return str(step)
    return f"{step}/{total} {100 * step / total:.0f}%"


def elapsed(run, now: float) -> float | None:  # run: RunInfo
    """Seconds the run has been (or was) running."""
    if not run.started:
        return None
    end = run.ended or (now if run.status == "running" else run.heartbeat or now)
    return max(0.0, end - run.started)
