"""Provides the doctor's monitor widgets: DoctorLine (the most severe open diagnosis, under the
header), spike markers for the charts, and the runs list's marker for runs with open warnings."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text
from textual.widgets import Static

from tuitrain.tui import fmt

if TYPE_CHECKING:  # chart.py loads plotext, which the runs list does not need
    from tuitrain.tui.widgets.chart import Line

STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}
MARK = {"critical": "!!", "warning": "!"}
ORDER = ("info", "warning", "critical")


def run_history(store: Any, run: Any, diags: list[Any]) -> list[dict]:
    """The run's doctor history as `tuitrain doctor` lists it (tuitrain.doctor.history.combined):
    the open diagnoses, then every closed episode, newest first."""
    from tuitrain.doctor.history import combined, history

    last = store.last_step(run.id)
    episodes = history(store.events(run.id), ended=run.terminal, last_step=last)
    return combined(diags, episodes, last)


def closed_of(entries: list[dict]) -> list[dict]:
    """The closed episodes of a combined history (those listed under the open ones)."""
    return [e for e in entries if e.get("state") == "closed"]


def steps_text(e: dict) -> str:
    """'steps 5-40' (or 'step 5' for a one-step episode)."""
    a, b = e.get("first_step"), e.get("last_step")
    if a is None:
        return ""
    return f"step {a}" if b in (None, a) else f"steps {a}-{b}"


def episode_text(e: dict) -> str:
    """A closed episode as list text: severity, id, steps, closed reason; peak; consequences."""
    style = STYLE.get(e["severity"], "")
    lines = [
        f"[dim]closed[/] [{style}]{e['severity'].upper()}[/] [b]{e['id']}[/b] "
        f"{steps_text(e)}: {escape(str(e.get('closed_reason') or ''))}",
        f"  peak:     {escape(str((e.get('peak') or {}).get('evidence', '')))}",
    ]
    if e.get("consequences"):
        also = ", ".join(e["consequences"])
        lines.append(f"  also:     {escape(also)} [dim](consequences, not opened separately)[/]")
    return "\n".join(lines)


def past_text(entries: list[dict]) -> str:
    """The doctor line of a run with nothing open but a past: its worst closed episode."""
    worst = [e for e in closed_of(entries) if e["severity"] != "info"]
    if not worst:
        return ""
    e = max(worst, key=lambda x: ORDER.index(x["severity"]))
    more = f" +{len(worst) - 1}" if len(worst) > 1 else ""
    head = fmt.styled(
        STYLE.get(e["severity"], ""), f"doctor (h): was {e['severity'].upper()} {e['id']}{more}"
    )
    return f"{head} {steps_text(e)}, {escape(str(e.get('closed_reason') or ''))}"


def line_text(diags: list[Any]) -> str:
    """'doctor (h): CRITICAL exploding_gradients @804 +1: grad norm ...' (the key first: the
    evidence is cut at the screen's width)."""
    if not diags:
        return ""
    d = diags[0]
    more = f" +{len(diags) - 1}" if len(diags) > 1 else ""
    at = f" @{d.step}" if d.step is not None else ""
    head = fmt.styled(
        STYLE.get(d.severity, ""), f"doctor (h): {d.severity.upper()} {d.id}{at}{more}"
    )
    return f"{head}: {escape(d.evidence)}"


class DoctorLine(Static):
    """One line under the monitor header: the run's most severe open diagnosis (hidden when
    none is a warning or critical). The monitor's poll thread diagnoses (tui/pollers/run.py)."""

    DEFAULT_CSS = """
    DoctorLine { display: none; height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.diagnoses: list[Any] = []
        self.history: list[dict] = []  # tuitrain.doctor.history.combined of the run
        self.checks = 0  # diagnoses shown (tests wait on it)

    def on_mount(self) -> None:
        self.display = False

    def show(self, diags: list[Any], history: list[dict] | None = None) -> None:
        """Show the most severe diagnosis (or, with none open, the worst closed episode: a
        finished run still says what went wrong); relayout when the line appears or goes."""
        self.diagnoses = diags
        self.history = history or []
        self.checks += 1
        # Info findings (nothing to act on: the trainer's watch ignores them too, and the runs
        # list marks none) take no row from the charts; they stay listed under h.
        shown = any(d.severity != "info" for d in diags)
        text = line_text(diags) if shown else past_text(self.history)
        shown = bool(text)
        if text != getattr(self, "_shown", None):  # checked on a timer: repaint only a change
            self._shown = text
            self.update(text)
        if shown != self.display:
            self.display = shown
            relayout = getattr(self.screen, "apply_layout", None)
            if relayout is not None:
                relayout()


def spike_lines(diags: list[Any], metric: str) -> list[Line]:
    """Red dots at the steps where the doctor found a spike of `metric` (loss or grad_norm)."""
    from tuitrain.tui.widgets.chart import Line

    ids = {"loss": "loss_spike", "grad_norm": "exploding_gradients"}
    out = []
    for d in diags:
        v = d.values or {}
        step, value = v.get("peak_step"), v.get(metric)
        if d.id == ids.get(metric) and isinstance(step, int) and isinstance(value, float):
            out.append(Line("", (float(step),), (value,), "red"))
    return out


class DoctorIndex:
    """The open doctor severity of each run from the `doctor` events its trainer wrote, read
    incrementally for all runs at once (the runs list runs no diagnosis per row)."""

    def __init__(self) -> None:
        self.last = 0  # newest event id read
        self.open: dict[str, dict[str, str]] = {}  # run id -> {diagnosis id: severity}

    def update(self, store: Any, runs: Any) -> None:
        """Read the doctor events added since the last call; set `run.doctor` on these runs."""
        # One range read over the events' rowid (the primary key): only new rows are scanned.
        rows = store.conn.execute(
            "SELECT id, run_id, data FROM events WHERE id > ? AND kind = 'doctor' ORDER BY id",
            (self.last,),
        ).fetchall()
        for eid, run_id, raw in rows:
            self.last = eid
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                continue
            state = self.open.setdefault(run_id, {})
            if not isinstance(data, dict) or "id" not in data:
                continue
            if data.get("state") == "closed":
                state.pop(data["id"], None)
            elif data.get("state") in ("open", "update"):
                state[data["id"]] = data.get("severity", "info")
        for run in runs:
            sev = self.open.get(run.id, {}).values()
            run.doctor = max(sev, key=ORDER.index, default=None)  # RunInfo: a plain dataclass


def with_doctor_mark(status: Text, run: Any) -> Text:
    """The status cell with ' !' (warning) or ' !!' (critical) for a run with open diagnoses."""
    sev = getattr(run, "doctor", None)
    mark = MARK.get(sev or "")
    if not mark:
        return status
    out = status.copy()
    out.append(" " + mark, style=fmt.no_color(STYLE[sev]))
    return out
