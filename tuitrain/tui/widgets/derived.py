"""Provides DerivedPanel (effective batch, steps, warmup, scaled LR, advice) and the schedule preview."""

from __future__ import annotations

from rich.markup import escape
from textual.containers import VerticalScroll
from textual.widgets import Static

from tuitrain.config.schedule import schedule_curve
from tuitrain.data.estimate import data_summary
from tuitrain.data.summary import summary_lines
from tuitrain.tui import fmt
from tuitrain.tui.widgets.chart import Line, MetricChart


class DerivedScroll(VerticalScroll):
    """Holds the DerivedPanel: its lines scroll (and wrap), so a warning is never cut off."""

    DEFAULT_CSS = """
    DerivedScroll { width: 1fr; height: 1fr; scrollbar-size-vertical: 1; }
    """


class DerivedPanel(Static):
    """The values that follow from the config, recomputed off the main thread after edits."""

    DEFAULT_CSS = """
    DerivedPanel { height: auto; padding: 0 1; }
    """

    def show_pending(self) -> None:
        """Mark the values as being recomputed."""
        self.set_class(True, "-pending")

    def show_invalid(self, count: int) -> None:
        """The config has problems, so nothing can be derived."""
        self.set_class(False, "-pending")
        self.update(
            f"[b]Derived[/b]\n[red]{count} problem{'s' if count != 1 else ''}: fix the marked fields[/]"
        )

    def show(self, resolved) -> None:  # resolved: tuitrain.config.Resolved
        """Show derived values and the config's advice."""
        self.set_class(False, "-pending")
        d = resolved.derived
        approx = "~" if d.samples_estimated else ""
        lines = [
            "[b]Derived[/b]",
            f"effective batch  {d.effective_batch}  ({d.num_processes} proc)",
            f"train samples    {approx}{d.train_samples if d.train_samples is not None else '?'}",
            f"total steps      {d.total_steps if d.total_steps is not None else '? (no data size)'}"
            + (f"  ({d.steps_per_epoch}/epoch)" if d.steps_per_epoch else ""),
            f"warmup steps     {d.warmup_steps if d.warmup_steps is not None else '?'}",
            f"scaled LR        {fmt.lr(d.scaled_lr)}",
        ]
        if d.lora_scale is not None:
            lines.append(f"LoRA scale       {d.lora_scale:.3g}")
        # Computed with the size estimate in the worker; here it is only read from the cache.
        data = data_summary(resolved.config, cached_only=True)
        if data is not None:
            lines.append(f"data format      {data.format} ({escape(data.how)})")
            if data.template:
                lines.append(f"chat template    {escape(data.template)}")
            for line in summary_lines(data.as_dict(), data.estimated):
                lines.append(escape(line))
        for w in resolved.warnings:
            lines.append(f"[yellow]! {escape(w)}[/]")
        self.update("\n".join(lines))


class SchedulePreview(MetricChart):
    """The LR schedule's shape over the whole run (same function the trainer uses)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("LR schedule", id=id)
        self.empty_text = "needs a valid config with known steps"

    def show(self, resolved) -> None:
        """Plot the schedule of a resolved config, sampled at about the chart's width."""
        d = resolved.derived
        cfg = resolved.config
        if not d.total_steps:
            self.set_lines([])
            return
        points = max(20, self.size.width * 2 or 120)
        curve = schedule_curve(
            cfg.scheduler, d.total_steps, d.warmup_steps or 0, d.scaled_lr, points
        )
        self.set_lines([Line("", tuple(s + 1 for s, _ in curve), tuple(v for _, v in curve))])
