"""Provides the samples as `tuitrain samples` prints them: JSON objects (one per stored sample),
a Markdown table ready to paste into a report or an issue (prompts down the side, one column per
run@step, the reference beside them), and a plain-text form that wraps to the terminal's width."""

from __future__ import annotations

import json
import math
import textwrap
from typing import Any

from tuitrain.samples.select import Grid
from tuitrain.store import Sample

FIELDS = (
    "run", "run_name", "step", "prompt_id", "source", "prompt", "messages", "reference", "output",
    "exact_match", "similarity", "repetition", "tokens", "seconds", "settings", "id", "created",
)  # fmt: skip


def sample_json(s: Sample, run_name: str) -> dict[str, Any]:
    """One sample as a JSON object (FIELDS; `run` is the run id, reference null where none)."""
    d = {k: getattr(s, k) for k in FIELDS if k not in ("run", "run_name")}
    return {"run": s.run_id, "run_name": run_name, **d}


def to_json(samples: list[Sample], names: dict[str, str]) -> str:
    """The samples as a JSON list (names: run id -> run name)."""
    return json.dumps([sample_json(s, names.get(s.run_id, s.run_id)) for s in samples], indent=2)


def _num(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"


def scores_line(s: Sample) -> str:
    """`exact 0 · sim 0.82 · rep 0.05` (exact and sim only where the prompt has a reference)."""
    parts = []
    if s.exact_match is not None:
        parts.append(f"exact {s.exact_match:g}")
    if s.similarity is not None:
        parts.append(f"sim {_num(s.similarity)}")
    if s.repetition is not None:
        parts.append(f"rep {_num(s.repetition)}")
    return " · ".join(parts)


def column_means(g: Grid) -> list[dict[str, float]]:
    """Per column, the means of its evaluation samples' scores (the samples/* metrics of that
    eval; answers asked of a checkpoint later are left out)."""
    from tuitrain.samples.scores import means

    out = []
    for i in range(len(g.columns)):
        cells = [r.cells[i] for r in g.rows if r.cells[i] is not None and r.source != "ask"]
        out.append(means([vars(c) for c in cells]))
    return out


def _md(text: str | None) -> str:
    """A Markdown table cell: pipes escaped, newlines as <br>, empty as an em dash."""
    if text is None:
        return "—"
    t = text.strip().replace("\\", "\\\\").replace("|", "\\|")
    t = "<br>".join(line.rstrip() for line in t.splitlines())
    return t or "*(empty)*"


def markdown(g: Grid) -> str:
    """The grid as a Markdown table: prompt, reference, one column per run@step (answer, then its
    scores in italics), and a last row of each column's mean scores."""
    head = ["prompt", "reference", *(c.label for c in g.columns)]
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for r in g.rows:
        cells = [f"`{r.prompt_id}` {_md(r.prompt)}", _md(r.reference)]
        for s in r.cells:
            if s is None:
                cells.append("—")
                continue
            sc = scores_line(s)
            cells.append(_md(s.output) + (f"<br>*{sc}*" if sc else ""))
        lines.append("| " + " | ".join(cells) + " |")
    means = column_means(g)
    if any(means):
        row = ["**mean**", ""]
        for m in means:
            row.append(" · ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in m.items()) or "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    """Text wrapped to `width`, its own line breaks kept, nothing dropped."""
    out: list[str] = []
    for para in text.strip().splitlines() or [""]:
        out += textwrap.wrap(para, width, break_long_words=True, replace_whitespace=False) or [""]
    return out


def text(g: Grid, width: int = 80) -> str:
    """The grid for a terminal: per prompt, its id and text, the reference, then each column's
    answer (wrapped to `width`) with its scores; each column's mean scores at the end."""
    labels = ["reference", *(c.label for c in g.columns)]
    lw = min(max(len(x) for x in labels), max(12, width // 3))
    body = max(20, width - lw - 4)
    out: list[str] = []
    for r in g.rows:
        head = f"[{r.prompt_id}] "
        out += [head + ln for ln in _wrap(r.prompt, max(20, width - len(head)))[:1]]
        out += [" " * len(head) + ln for ln in _wrap(r.prompt, max(20, width - len(head)))[1:]]
        pairs: list[tuple[str, list[str]]] = []
        if r.reference is not None:
            pairs.append(("reference", _wrap(r.reference, body)))
        for c, s in zip(g.columns, r.cells, strict=True):
            if s is None:
                pairs.append((c.label, ["—"]))
                continue
            lines = _wrap(s.output, body) if s.output.strip() else ["(empty answer)"]
            sc = scores_line(s)
            pairs.append((c.label, lines + ([sc] if sc else [])))
        for label, lines in pairs:
            shown = label if len(label) <= lw else label[: lw - 1] + "…"
            for i, ln in enumerate(lines):
                out.append(f"  {(shown if i == 0 else ''):<{lw}}  {ln}".rstrip())
        out.append("")
    means = column_means(g)
    if any(means):
        out.append("means")
        for c, m in zip(g.columns, means, strict=True):
            shown = c.label if len(c.label) <= lw else c.label[: lw - 1] + "…"
            vals = "  ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in m.items())
            out.append(f"  {shown:<{lw}}  {vals}".rstrip())
    return "\n".join(out).rstrip("\n")
