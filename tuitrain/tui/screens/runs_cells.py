"""Provides the runs list's columns and cells: which columns fit a width, and each cell's text
(progress, best, status, tags, the tree view's fork, the detail line)."""

from __future__ import annotations

import time

from rich.markup import escape
from rich.text import Text

from tuitrain.runs import liveness
from tuitrain.runs.columns import cut_middle
from tuitrain.tui import fmt
from tuitrain.tui.lineage_view import lineage_text
from tuitrain.tui.widgets.doctor import with_doctor_mark
from tuitrain.tui.widgets.run_panes import phase_text

# (key, label, width): fixed widths, so rows never jump as values grow; name takes the rest.
COLUMNS = (
    ("mark", " ", 1),
    ("name", "name", 0),
    ("status", "status", 13),
    ("progress", "progress", 14),  # "1000/1000 100%" whole
    ("best", "best", 7),
    ("elapsed", "elapsed", 7),
    ("started", "started", 11),
)
# The tree view (t): where each branch began instead of when it started.
TREE_COLUMNS = (*COLUMNS[:-1], ("fork", "from", 11))
# Below this many cells for names, columns go (started, then elapsed, then from); status,
# progress and best always stay (60x20 keeps them).
MIN_NAME = 16
DROPPABLE = ("started", "elapsed", "fork")  # the tree view keeps its "from" longest


def fit_columns(columns: tuple, width: int) -> tuple[tuple, int]:
    """(the columns that fit `width`, the name column's width: all that the others leave)."""
    cols = list(columns)

    def left() -> int:
        return width - sum(w for _, _, w in cols) - 2 * len(cols) - 2  # cell padding, scrollbar

    for key in DROPPABLE:
        if left() >= MIN_NAME:
            break
        cols = [c for c in cols if c[0] != key]
    return tuple(cols), max(8, left())


def best_text(run) -> str:
    """The run's best monitored value, e.g. '1.234' (the metric name is in the status line):
    the poll loop sets run.best from the logged metrics (tuitrain.runs.columns)."""
    best = getattr(run, "best", None)
    if best is None:
        best = (run.summary or {}).get("best_value")
    return fmt.number(best, 4)


def total_steps(run) -> int | None:
    """Planned optimizer steps from the run's derived values (or its summary)."""
    return (run.derived or {}).get("total_steps") or (run.summary or {}).get("total_steps")


def _count(n: int) -> str:
    """9999, 12k, 999k, 1.2M, 12M: at most 4 characters."""
    if n < 10_000:
        return str(n)
    if round(n / 1000) < 1000:
        return f"{round(n / 1000)}k"
    m = n / 1e6
    return f"{m:.1f}M" if m < 9.95 else f"{round(m)}M"


def progress_text(step: int | None, total: int | None) -> str:
    """'120/400 30%', '1000/1000 100%', '12k/100k 12%': always within the column's 14 cells."""
    if step is None:
        return "-"
    if not total:
        return _count(step)
    return f"{_count(step)}/{_count(total)} {100 * step / total:.0f}%"


def tags_of(run) -> list[str]:
    """run.tags from the run's config (free-form configs of scripts may have none)."""
    cfg = run.config if isinstance(run.config, dict) else {}
    group = cfg.get("run") if isinstance(cfg.get("run"), dict) else {}
    tags = group.get("tags") or []
    return [str(t) for t in tags] if isinstance(tags, list) else []


def matches(run, query: str) -> bool:
    """Whether a run passes the `/` filter: every word is in its name, id or one of its tags."""
    hay = [(run.name or "").lower(), run.id.lower(), *(t.lower() for t in tags_of(run))]
    return all(any(word in h for h in hay) for word in query.lower().split())


def fork_text(run) -> str:
    """The tree view's 'from' cell of a branch: the parent's val_loss at the fork and the fork
    step, e.g. '2.412 @200' ('@200' when the parent has no val_loss by then; '' for a root)."""
    if not getattr(run, "parent", None) or getattr(run, "fork_step", None) is None:
        return ""
    val = getattr(run, "fork_value", None)
    step = f"@{_count(run.fork_step)}"
    return f"{fmt.number(val, 4)} {step}" if val is not None else step


def status_text(run) -> Text:
    """The status cell: 'stalled 3m' (yellow) for a running run whose step stopped advancing."""
    if run.status == "running" and getattr(run, "stalled", False):
        return Text(liveness.stall_label(run), fmt.no_color("bold yellow"))
    phase = phase_text(run, time.time(), short=True)
    if phase:  # a long eval or save: running, just not stepping
        return Text(phase, fmt.no_color("cyan"))
    return Text(run.status, fmt.status_style(run.status))


def detail_text(run) -> str:
    """One line about the highlighted run: why it ended (or stalled), its tags and notes."""
    from tuitrain.tui.widgets.events import one_line

    parts = [f"[b]{escape(run.name or run.id)}[/b] {fmt.status(run.status)}"]
    if getattr(run, "stalled", False):
        age = getattr(run, "last_step_age_s", None)
        parts.append(fmt.styled("bold yellow", f"no new step for {fmt.duration(age)}"))
    if run.terminal and run.exit_reason:
        style = "red" if run.status in ("failed", "crashed", "diverged") else "dim"
        parts.append(fmt.styled(style, escape(one_line(run.exit_reason.strip()))))
    if lineage_text(run):
        parts.append("[dim]" + escape(lineage_text(run)) + "[/]")
    tags = tags_of(run)
    if tags:
        parts.append("[dim]tags:[/] " + escape(" ".join(tags)))
    cfg = run.config if isinstance(run.config, dict) else {}
    notes = (cfg.get("run") or {}).get("notes") if isinstance(cfg.get("run"), dict) else None
    if isinstance(notes, str) and notes.strip():
        parts.append("[dim]notes:[/] " + escape(one_line(notes.strip())))
    return " · ".join(parts)


def row_cells(
    run, columns: tuple, *, now: float, prefix: str, name_width: int, tree_view: bool, marked: bool
) -> list:
    """The runs table's cells of one run, in `columns` order (prefix: its lineage indent)."""
    room = max(4, name_width - len(prefix))
    name = Text(prefix + cut_middle(run.name or run.id, room), overflow="ellipsis", no_wrap=True)
    tags = tags_of(run)
    if tags:
        name.append(" " + " ".join(tags), style="dim")
    last = (
        Text(fork_text(run), style="dim")
        if tree_view
        else Text(fmt.clock(run.started or run.created))
    )
    cells = {
        "mark": Text("*", style="bold yellow") if marked else Text(" "),
        "name": name,
        "status": with_doctor_mark(status_text(run), run),
        # Text, not str: a DataTable parses str cells as markup (2000 runs: ~1 s of it).
        "progress": Text(progress_text(run.last_step, total_steps(run))),
        "best": Text(best_text(run)),
        "elapsed": Text(fmt.duration(fmt.elapsed(run, now))),
        "started": last,
        "fork": last,
    }
    return [cells[key] for key, _, _ in columns]
