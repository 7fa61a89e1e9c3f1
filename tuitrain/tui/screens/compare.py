"""Provides CompareScreen: 2-4 runs overlaid per metric, summaries side by side, config diff, and
each run's doctor history (open diagnoses, then closed episodes: tuitrain.doctor.history)."""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from tuitrain.runs import liveness
from tuitrain.tui import fmt
from tuitrain.tui.context import app_of
from tuitrain.tui.lineage_view import PARENT_KEY, parent_series, prefix_line
from tuitrain.tui.messages import CompareLoaded
from tuitrain.tui.widgets.chart import COLORS, Line, MetricChart, ema
from tuitrain.tui.widgets.keybar import KeyBar

PREFERRED = (
    "loss",
    "val_loss",
    "val_accuracy",
    "val_perplexity",
    "samples/similarity",  # the generation samples' per-eval means (tuitrain.samples.scores)
    "samples/exact_match",
    "samples/repetition",
    "lr",
    "grad_norm",
    "tokens_per_s",
)
BUCKETS = 160
INTERVENTION_KINDS = ("lr", "early_stop")
_LR_CHANGE = re.compile(r"lr (\S+) -> (\S+)")


def unique_names(runs: list) -> list[str]:
    """Run names for the legend and columns, made unique: a repeated name gets its id's tail."""
    names = [r.name or r.id for r in runs]
    return [
        f"{n}·{r.id[-4:]}" if names.count(n) > 1 else n for n, r in zip(names, runs, strict=True)
    ]


def _lr_before(lr_series: list | None, step: int) -> float | None:
    """The LR logged at or before a step (the last bucket that ends there), from the lr series."""
    before = [p for p in lr_series or [] if p[0] <= step]
    return before[-1][3] if before else None


def interventions(run, events: list, lr_series: list | None = None) -> list[tuple[int, str, str]]:
    """What was done to a run while it trained, in step order: (step, kind, 'old -> new').

    LR commands (their event says "lr A -> B"), plateau cuts (old LR from the lr series),
    early stops, and a stop that ended the run."""
    out: list[tuple[int, str, str]] = []
    for e in events:
        step = e.step if e.step is not None else -1
        if e.kind == "lr":
            m = _LR_CHANGE.search(e.message)
            data = e.data if isinstance(e.data, dict) else {}
            if m:
                what = "plateau cut" if e.message.startswith("plateau") else "LR change"
                out.append((step, what, f"{m.group(1)} -> {m.group(2)}"))
            else:
                old = _lr_before(lr_series, step)
                new = data.get("lr")
                what = "plateau cut" if e.message.startswith("plateau") else "LR change"
                out.append((step, what, f"{fmt.lr(old)} -> {fmt.lr(new)}"))
        elif e.kind == "early_stop":
            out.append((step, "early stop", e.message))
    if run.status in ("stopped", "early_stopped") and not any(k == "early stop" for _, k, _ in out):
        out.append((run.last_step or -1, "stop", run.exit_reason or run.status))
    out.sort(key=lambda x: x[0])
    return out


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"optimizer.lr": 0.001, ...}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# Labels, not settings: a sweep's tags (50+ characters) pushed the trials off the screen.
NOT_SETTINGS = ("run.tags",)


def config_diff(configs: list[dict]) -> list[tuple[str, list[Any]]]:
    """Only the settings whose values differ between the configs (a missing key counts as
    different); tags are labels, not settings, and stay out."""
    flats = [flatten(c or {}) for c in configs]
    for f in flats:
        for k in NOT_SETTINGS:
            f.pop(k, None)
    keys = sorted(set().union(*flats))
    missing = object()
    rows = []
    for k in keys:
        vals = [f.get(k, missing) for f in flats]
        if any(v != vals[0] for v in vals[1:]):
            rows.append((k, [None if v is missing else v for v in vals]))
    return rows


def summary_rows(
    runs: list, series: dict[str, dict[str, list]], now: float
) -> list[tuple[str, list[str]]]:
    """Side-by-side summary lines: best and final val loss, steps, wall time, tokens/s."""

    def last(run, name: str) -> float | None:
        pts = series.get(name, {}).get(run.id)
        return pts[-1][3] if pts else None

    def best_val(run) -> float | None:
        s = run.summary or {}
        if s.get("best_val_loss") is not None:
            return s["best_val_loss"]
        pts = series.get("val_loss", {}).get(run.id)
        return min(p[1] for p in pts) if pts else None

    def pick(run, key: str, fallback):
        v = (run.summary or {}).get(key)
        return fallback() if v is None else v

    return [
        ("status", [r.status for r in runs]),
        ("best val loss", [fmt.number(best_val(r)) for r in runs]),
        (
            "final val loss",
            [fmt.number(pick(r, "final_val_loss", lambda r=r: last(r, "val_loss"))) for r in runs],
        ),
        (
            "steps",
            [
                fmt.progress(
                    pick(r, "steps", lambda r=r: r.last_step), (r.derived or {}).get("total_steps")
                )
                for r in runs
            ],
        ),
        (
            "wall time",
            [fmt.duration(pick(r, "wall_time_s", lambda r=r: fmt.elapsed(r, now))) for r in runs],
        ),
        (
            "tokens/s",
            [
                fmt.number(pick(r, "tokens_per_s", lambda r=r: last(r, "tokens_per_s")), 5)
                for r in runs
            ],
        ),
        ("peak LR", [fmt.lr((r.derived or {}).get("scaled_lr")) for r in runs]),
    ]


class CompareScreen(Screen):
    """Overlaid curves (one colour per run), summary columns and the config keys that differ."""

    BINDINGS = [
        Binding("m", "metric(1)", "Next metric"),
        Binding("M", "metric(-1)", "Prev metric", show=False),
        Binding("y", "log_y", "Log y"),
        Binding("s", "smooth", "Smooth"),
        Binding("a", "samples", "Samples"),  # the runs' answers side by side
        Binding("1", "tab('curves')", "Curves", show=False),
        Binding("2", "tab('summary')", "Summary", show=False),
        Binding("3", "tab('diff')", "Config diff", show=False),
        Binding("4", "tab('doctor')", "Doctor", show=False),
        Binding("q,escape,b", "back", "Back", key_display="q"),
    ]

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__(id="compare")
        self.run_ids = run_ids
        self.runs: list = []
        self.series: dict[str, dict[str, list]] = {}
        self.metrics: list[str] = []
        self.metric = "loss"
        self.log_y = False
        self.smooth = False
        self.names: list[str] = []  # unique display names, one per run
        self.steered: dict[str, list[tuple[int, str, str]]] = {}  # run id -> interventions
        self.doctor: dict[str, list[dict]] = {}  # run id -> doctor history (open, then closed)

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-legend")
        with TabbedContent(id="compare-tabs", initial="curves"):
            with TabPane("Curves (1)", id="curves"):
                yield MetricChart("loss", id="compare-chart")
            with TabPane("Summary (2)", id="summary"):
                yield DataTable(id="summary-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Diff + steering (3)", id="diff"):
                yield DataTable(id="diff-table", cursor_type="row", zebra_stripes=True)
                yield DataTable(id="interventions-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Doctor (4)", id="doctor"):
                yield DataTable(id="doctor-table", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()
        self.set_interval(app_of(self).settings.list_poll_s, self.refresh_if_live)

    def refresh_if_live(self) -> None:
        """Re-read while any compared run is still running."""
        if self.is_current and any(r.status in ("running", "queued") for r in self.runs):
            self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare")
    def load(self) -> None:
        """Read the runs and their downsampled series (own Store in this thread)."""
        from tuitrain.doctor import diagnose_run
        from tuitrain.store import Store
        from tuitrain.tui.widgets.doctor import run_history

        with Store(app_of(self).runs_dir) as store:
            runs = [liveness.view_run(store, r) for r in self.run_ids]
            series: dict[str, dict[str, list]] = {}
            events: dict[str, list] = {}
            doctor: dict[str, list[dict]] = {}
            for run in runs:
                diags = diagnose_run(store, run, now=app_of(self).now())
                doctor[run.id] = run_history(store, run, diags)
                for name in store.metric_names(run.id):
                    if name in PREFERRED:
                        series.setdefault(name, {})[run.id] = store.series(run.id, name, BUCKETS)
                events[run.id] = [e for e in store.events(run.id) if e.kind in INTERVENTION_KINDS]
                if run.parent not in {r.id for r in runs}:  # a branch without its parent here
                    for key, pts in parent_series(store, run, PREFERRED, BUCKETS).items():
                        series.setdefault(key, {})[run.id] = pts  # its prefix, drawn dim
        self.post_message(CompareLoaded(runs, series, events, doctor))

    def on_compare_loaded(self, msg: CompareLoaded) -> None:
        self.runs, self.series, self.doctor = msg.runs, msg.series, msg.doctor
        self.names = unique_names(self.runs)
        self.steered = {
            r.id: interventions(r, msg.events.get(r.id, []), self.series.get("lr", {}).get(r.id))
            for r in self.runs
        }
        self.metrics = [m for m in PREFERRED if m in self.series]
        if self.metric not in self.metrics and self.metrics:
            self.metric = self.metrics[0]
        legend = "   ".join(
            f"[{COLORS[i % len(COLORS)]}]━━ {escape(n)}[/]" for i, n in enumerate(self.names)
        )
        if any(self.steered.values()):
            legend += "   [dim]│ steered (3)[/]"
        self.query_one("#compare-legend", Static).update(
            f"[b]Comparing {len(self.runs)} runs[/b]  {legend}"
        )
        self.draw()
        self.fill_tables()

    def draw(self) -> None:
        """Overlay the current metric of every run."""
        lines = []
        for i, run in enumerate(self.runs):
            prefix = prefix_line(self.series.get(PARENT_KEY + self.metric, {}).get(run.id))
            lines += [prefix] if prefix else []
            pts = self.series.get(self.metric, {}).get(run.id)
            if not pts:
                continue
            ys = [p[3] for p in pts]
            if self.smooth:
                ys = ema(ys, app_of(self).settings.smoothing)
            lines.append(
                Line(self.names[i], tuple(p[0] for p in pts), tuple(ys), COLORS[i % len(COLORS)])
            )
        chart = self.query_one("#compare-chart", MetricChart)
        chart.marks = [
            (step, COLORS[i % len(COLORS)])
            for i, run in enumerate(self.runs)
            for step, _, _ in self.steered.get(run.id, [])
            if step >= 0
        ]
        others = ", ".join(m for m in self.metrics if m != self.metric)
        chart.title = f"{self.metric}   (m: next metric{': ' + others if others else ''})"
        chart.set_lines(lines, self.log_y)

    def fill_tables(self) -> None:
        """Summary columns and the config diff, one column per run."""
        names = [Text(n, style=COLORS[i % len(COLORS)]) for i, n in enumerate(self.names)]
        table = self.query_one("#summary-table", DataTable)
        table.clear(columns=True)
        table.add_columns("", *names)
        for label, values in summary_rows(self.runs, self.series, app_of(self).now()):
            table.add_row(label, *values)
        diff = self.query_one("#diff-table", DataTable)
        diff.clear(columns=True)
        diff.add_columns("key", *names)
        rows = config_diff([r.config for r in self.runs])
        for key, values in rows:
            diff.add_row(key, *["-" if v is None else str(v) for v in values])
        if not rows:
            diff.add_row("(identical configs)", *["" for _ in self.runs])
        steps = self.query_one("#interventions-table", DataTable)
        steps.clear(columns=True)
        steps.add_columns("run", "step", "intervention", "old -> new / reason")
        for i, run in enumerate(self.runs):
            for step, kind, what in self.steered.get(run.id, []):
                steps.add_row(names[i], "-" if step < 0 else str(step), kind, what)
        if not any(self.steered.values()):
            steps.add_row("(none)", "", "no LR change, stop or plateau cut in these runs", "")
        self.fill_doctor(names)

    def fill_doctor(self, names: list[Text]) -> None:
        """Each run's doctor history: open diagnoses, then closed episodes (newest first)."""
        from tuitrain.tui.widgets.doctor import STYLE, steps_text

        table = self.query_one("#doctor-table", DataTable)
        table.clear(columns=True)
        table.add_columns("run", "state", "diagnosis", "steps", "peak", "closed", "consequences")
        for i, run in enumerate(self.runs):
            entries = self.doctor.get(run.id, [])
            for e in entries:
                table.add_row(
                    names[i],
                    e["state"],
                    Text(f"{e['severity'].upper()} {e['id']}", style=STYLE.get(e["severity"], "")),
                    steps_text(e),
                    str((e.get("peak") or {}).get("evidence", "")),
                    e.get("closed_reason") or "",
                    ", ".join(e.get("consequences") or []),
                )
            if not entries:
                table.add_row(
                    names[i], "", "(nothing: no diagnosis, none in this run)", "", "", "", ""
                )

    def action_metric(self, step: int) -> None:
        """Show the next (or previous) metric."""
        if self.metrics:
            i = self.metrics.index(self.metric) if self.metric in self.metrics else 0
            self.metric = self.metrics[(i + step) % len(self.metrics)]
            self.draw()

    def action_log_y(self) -> None:
        """Toggle a logarithmic y axis."""
        self.log_y = not self.log_y
        self.draw()

    def action_smooth(self) -> None:
        """Toggle EMA smoothing."""
        self.smooth = not self.smooth
        self.draw()

    def action_tab(self, tab: str) -> None:
        """Switch tab."""
        self.query_one("#compare-tabs", TabbedContent).active = tab

    def action_samples(self) -> None:
        """The compared runs' answers to the same prompts, side by side (screens.samples)."""
        app_of(self).open_samples(list(self.run_ids))

    def action_back(self) -> None:
        """Back to the runs list."""
        app_of(self).action_back()
