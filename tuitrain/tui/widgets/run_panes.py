"""Provides the monitor's text panes: run header (step, ETA, speed, memory, stall), notes, commands."""

from __future__ import annotations

from rich.markup import escape
from textual.content import Content
from textual.visual import VisualType
from textual.widgets import Static

from tuitrain.tui import fmt
from tuitrain.tui.widgets.events import one_line
from tuitrain.tui.widgets.partial import refresh_changed


def eta_seconds(run, step: int | None, total: int | None, now: float) -> float | None:
    """Remaining time from the average step rate so far (None before the first step)."""
    if not run.started or not step or not total or run.status != "running":
        return None
    rate = (now - run.started) / step
    return max(0.0, (total - step) * rate)


def short(text: str, width: int) -> str:
    """Cut text to width with an ellipsis (long run names must not push the step count off an 80-column header)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def thousands(value: float | None) -> str:
    """12.3k style for throughputs."""
    if value is None:
        return "-"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def stalled_text(run) -> str:
    """'stalled 3m' when the liveness check says the run's step stopped advancing, else ''."""
    from tuitrain.runs.liveness import stall_label

    return stall_label(run)


PHASE_SHOW_S = 5.0  # a phase shows once it has lasted this long (short evals would flicker)
PHASE_WORDS = {"eval": "evaluating", "save": "saving"}


def phase_text(run, now: float, short: bool = False) -> str:
    """'evaluating 2m' ('eval 2m' short) while a running run's trainer announces a phase
    between steps (store column phase) that has lasted PHASE_SHOW_S, else ''."""
    phase, since = getattr(run, "phase", None), getattr(run, "phase_since", None)
    if run.status != "running" or not phase or since is None or now - since < PHASE_SHOW_S:
        return ""
    word = phase if short else PHASE_WORDS.get(phase, phase)
    return f"{word} {fmt.duration(now - since)}"


def memory_text(latest: dict[str, float]) -> str:
    """'1.2/3.4G' (allocated / peak); older runs logged only gpu_mem_gb (the peak)."""
    alloc, peak = latest.get("gpu_mem_alloc_gb"), latest.get("gpu_mem_peak_gb")
    if alloc is None and peak is None:
        old = latest.get("gpu_mem_gb")
        return "-" if old is None else f"{old:.1f}G"
    a = "-" if alloc is None else f"{alloc:.1f}"
    p = "-" if peak is None else f"{peak:.1f}"
    return f"{a}/{p}G"


class RunHeader(Static):
    """Two lines: identity, status, progress, ETA; then the latest metric values.

    It changes at every poll (step, loss, elapsed), so show() repaints only the cells that
    changed: over SSH a whole header is ~300 bytes, a new step and loss ~60 (issue 27)."""

    _content: Content | None = None  # what show() drew last (None: Static's own content)

    def render(self):
        """The content show() drew last, else what update() set."""
        return self._content if self._content is not None else super().render()

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        """Show other content (an error) in place of the run's lines."""
        self._content = None
        self._shown = None
        super().update(content, layout=layout)

    def show(self, run, latest: dict[str, float], total: int | None, now: float) -> None:
        """Render the header for a run snapshot."""
        step = run.last_step
        eta = eta_seconds(run, step, total, now)
        epoch = latest.get("epoch")
        stalled = stalled_text(run)
        phase = "" if stalled else phase_text(run, now)
        status = fmt.status(run.status) + (
            " " + fmt.styled("bold yellow", stalled) if stalled else ""
        )
        if phase:
            status += " " + fmt.styled("cyan", escape(phase))
        # Below 80 columns (60x20 over a phone) keep what matters: drop epoch and elapsed,
        # tok/s, single spaces, so step, ETA, loss, LR and memory stay on screen.
        narrow = 0 < self.content_size.width < 76
        gap = " " if narrow else "  "
        line1 = (
            f"[b]{escape(short(run.name or run.id, 14 if narrow else 20))}[/b] {status}{gap}"
            f"step {fmt.progress(step, total)}{gap}"
            + ("" if narrow else f"epoch {fmt.number(epoch, 3)}  ")
            + f"ETA {fmt.duration(eta)}"
            + ("" if narrow else f"  elapsed {fmt.duration(fmt.elapsed(run, now))}")
        )
        line2 = (
            f"loss {fmt.number(latest.get('loss'))}{gap}val {fmt.number(latest.get('val_loss'))}{gap}"
            + (
                f"acc {fmt.number(latest['val_accuracy'], 3)}{gap}"
                if "val_accuracy" in latest
                else ""
            )
            + f"lr {fmt.lr(latest.get('lr'))}{gap}grad {fmt.number(latest.get('grad_norm'), 3)}{gap}"
            + ("" if narrow else f"tok/s {thousands(latest.get('tokens_per_s'))}{gap}")
            + f"mem {memory_text(latest)}"
        )
        if run.terminal and run.exit_reason:
            # A run that died before starting carries train.log's last lines: keep them on one line.
            reason = one_line(run.exit_reason.strip())
            style = "red" if run.status in ("failed", "crashed", "diverged") else "dim"
            line2 = f"[{style}]{escape(short(reason, 200))}[/]  " + line2
        text = line1 + "\n" + line2
        if text == getattr(self, "_shown", None):
            return
        self._shown = text
        old, new = self._content, Content.from_markup(text)
        self._content = new
        width = self.content_size.width
        if old is None or not width or any(len(x) > width for x in new.plain.split("\n")):
            self.refresh()  # first draw, or a line cut with an ellipsis: the whole header
        else:
            refresh_changed(self, old, new)  # fixed size: never a relayout


class NotesLine(Static):
    """The run's notes (run.notes) on one line under the header; hidden when there are none."""

    def show(self, notes: str) -> None:
        """Show the notes (one line, escaped), or hide the line."""
        notes = notes.strip()
        if notes == getattr(self, "_shown", None):
            return
        self._shown = notes
        self.display = bool(notes)
        self.update(f"[dim]notes:[/] {escape(one_line(notes))}  [dim](e: edit)[/]")


def command_text(cmd, pending_local: bool = False, warmup: int = 0) -> str:
    """One command with its state: pending, applied at step N, or rejected with the reason.

    A set_lr applied during the warmup (`warmup` steps) sets the warmup's target, not the LR now:
    the trainer's acknowledgement says so ("2e-4 is the target ...; warmup 90%: 1.8e-4 now")."""
    p = cmd.payload or {}
    what = {
        "set_lr": lambda: f"set LR {fmt.lr(p.get('lr'))}",
        "scale_lr": lambda: f"LR x{p.get('factor', 0):.3g}",
    }.get(cmd.kind, lambda: cmd.kind)()
    if cmd.status == "applied":
        state = f"[green]applied @{cmd.applied_step}[/]"
        step = cmd.applied_step
        if cmd.kind == "set_lr" and cmd.reason and step is not None and step < warmup:
            state += f" [dim]{escape(cmd.reason)}[/]"
    elif cmd.status == "rejected":
        state = f"[red]rejected: {escape(cmd.reason or '')}[/]"
    else:
        state = "[yellow]pending…[/]"
    return f"#{cmd.id} {escape(what)} {state}"


class CommandsPane(Static):
    """The run's latest steering commands and their states."""

    def show(self, commands: list, warmup: int = 0) -> None:
        """Show the newest few commands (newest last); `warmup`: the run's warmup steps."""
        if not commands:
            text = "[b]Commands[/b]\n[dim]none yet[/]\n[dim]u/d: LR x/÷, l: set LR[/]"
        else:
            text = "[b]Commands[/b]\n" + "\n".join(
                command_text(c, warmup=warmup) for c in commands[-5:]
            )
        if text != getattr(self, "_shown", None):  # polled twice a second: skip no-op relayouts
            self._shown = text
            self.update(text, layout=False)
