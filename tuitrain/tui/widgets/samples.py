"""Provides the samples screen's pieces: how many answer columns fit, each answer as wrapped text
with its scores (changed words marked), the prompt list's lines, the empty-state message and the
full text of one prompt's answers."""

from __future__ import annotations

import re

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tuitrain.samples.view import changed_spans, score_parts, scores_text
from tuitrain.tui import fmt
from tuitrain.tui.widgets.events import one_line

# An answer column narrower than this wraps every few words: fewer columns instead (scroll).
MIN_COL = 26
# From this many shares of the width the reference is a column beside the answers; below, a
# line above them (at 80x24 two answers side by side matter more than the reference's column).
REF_COLUMN_FROM = 3
DIFF_STYLE = "reverse"  # readable without colour too
_BLANKS = re.compile(r"\n{3,}")
SOURCE_TAG = {"val": "val", "prompt": "gen", "ask": "ask"}
SOURCE_TEXT = {
    "val": "validation prompt",
    "prompt": "generation.prompts, no reference",
    "ask": "asked of a checkpoint, no reference",
}


def fit(width: int, n_columns: int, has_reference: bool) -> tuple[int, bool]:
    """(answer columns shown, whether the reference is a column) for a body `width` cells wide."""
    shares = max(1, width // MIN_COL)
    ref_column = has_reference and shares >= REF_COLUMN_FROM
    shown = max(1, shares - (1 if ref_column else 0))
    return min(shown, max(1, n_columns)), ref_column


def rep_style(repetition: float | None) -> str:
    """Repetition worth a look: yellow from 0.2, bold red from 0.5 (colourless under NO_COLOR)."""
    if repetition is None or repetition < 0.2:
        return ""
    return fmt.no_color("bold red" if repetition >= 0.5 else "yellow")


def shown_output(output: str) -> str:
    """The answer as a cell shows it: a run of blank lines (a small model's answer is often
    mostly newlines) as one `⏎×N` line, so the words stay in view; the full text has them all."""
    if not output.strip():
        return "(empty answer)"

    def mark(m: re.Match) -> str:
        n = len(m.group())
        return f"⏎×{n}\n" if m.start() == 0 else f"\n⏎×{n - 1}\n"  # the blank lines it held

    return _BLANKS.sub(mark, output.rstrip("\n"))


def answer_text(sample, before: str | None, diff: bool, empty: str) -> Text:
    """One answer wrapped, its scores under it; with `diff`, the words that differ from `before`
    (the answer in the column to its left) are marked."""
    if sample is None:
        return Text(empty, style="dim")
    shown = shown_output(sample.output)
    text = Text(shown)
    if diff:
        for start, end in changed_spans(None if before is None else shown_output(before), shown):
            text.stylize(DIFF_STYLE, start, end)
    parts = score_parts(sample)
    if parts:
        text.append("\n")
        for i, part in enumerate(parts):
            style = "dim"
            if part.startswith("✓"):
                style = fmt.no_color("green") or "bold"
            elif part.startswith("✗"):
                style = fmt.no_color("red") or "dim"
            elif part.startswith("rep"):
                style = rep_style(sample.repetition) or "dim"
            # One space apart: `✗ exact sim 100% rep 100%` fits a 26-cell column unwrapped.
            text.append((" " if i else "") + part, style=style)
    return text


def column_header(column, single_run: bool, best: int | None) -> Text:
    """`step 150` (one run) or `low-lr@150` (compared runs), `best` after the run's best step."""
    head = Text(f"step {column.step}" if single_run else column.label, style="bold")
    if best is not None and column.step == best:
        head.append(" best", style=fmt.no_color("green"))
    return head


def answers_table(headers: list[Text], cells: list[Text]) -> Table:
    """The answers side by side, one equal-width wrapped column each."""
    table = Table(box=box.MINIMAL, expand=True, padding=(0, 1), show_edge=False)
    for h in headers:
        table.add_column(h, ratio=1, overflow="fold")
    table.add_row(*cells)
    return table


def prompt_line(row, width: int) -> Text:
    """The prompt list's line: its source tag, then the prompt on one line (cut to fit)."""
    tag = SOURCE_TAG.get(row.source, row.source[:3])
    line = Text(f"{tag} ", style="dim")
    line.append(one_line(row.prompt))
    line.truncate(max(4, width), overflow="ellipsis")
    line.no_wrap = True
    return line


def prompt_block(row, reference_above: bool) -> RenderableType:
    """The selected prompt in full, what it is, and (when not a column) its reference answer."""
    head = Text(row.prompt, style="bold")
    head.append(f"  ({SOURCE_TEXT.get(row.source, row.source)})", style="dim")
    parts: list[RenderableType] = [head]
    if reference_above and row.reference is not None:
        ref = Text("reference: ", style="bold")
        ref.append(row.reference)
        parts.append(ref)
    return Group(*parts)


def empty_message(runs: list, which: str | int, missing: list[str]) -> str:
    """What the screen says when there is nothing to show, and how to get samples (markup-free)."""
    if which != "all":
        return (
            f"No samples at step {which}: " + "; ".join(missing) + ".\n\n"
            "s shows all steps, then each run's best, then its last; g picks a step."
        )
    names = ", ".join(r.name or r.id for r in runs) or "these runs"
    lines = [f"No samples yet for {names}.", ""]
    for r in runs:
        cfg = r.config or {}
        task = (cfg.get("model") or {}).get("task", "causal-lm")
        gen = cfg.get("generation") or {}
        if task == "seq-cls":
            lines.append(
                f"{r.name} is a classification run (model.task: seq-cls): it generates no "
                "answers, so it has no samples."
            )
        elif gen.get("enabled") is False:
            lines.append(f"{r.name} has generation.enabled: false: it generated no answers.")
        elif not r.terminal:
            every = (cfg.get("training") or {}).get("eval_every")
            when = f" (every {every} steps)" if every else ""
            lines.append(f"{r.name} is still training: its first samples come with its first evaluation{when}.")  # fmt: skip
    lines += [
        "",
        "Samples are the model's answers to the same prompts at each evaluation. A causal-lm "
        "run generates them at every eval while generation.enabled is on (the default): the "
        "prompts in generation.prompts and the first generation.val_prompts held-out "
        "validation prompts, shown with their reference answers. Set them in the editor "
        "(Generation) or with --set, e.g. --set generation.val_prompts=4.",
        "Classification runs (seq-cls) have none.",
        "",
        "p asks a finished run's best checkpoint a prompt of yours now.",
    ]
    return "\n".join(lines)


def full_text(row, columns: list, names: dict[str, str]) -> str:
    """Everything of one prompt's answers, for the full-text view: prompt (each chat turn),
    reference, then each column's answer with its scores, tokens, time and decoding settings."""
    first = next((c for c in row.cells if c is not None), None)
    parts = [f"prompt ({SOURCE_TEXT.get(row.source, row.source)}):", row.prompt]
    if first is not None and first.messages and len(first.messages) > 1:
        parts += ["", "chat:"] + [f"  {m.get('role')}: {m.get('content')}" for m in first.messages]
    parts += ["", "reference:", row.reference if row.reference is not None else "(none)"]
    for col, s in zip(columns, row.cells, strict=True):
        head = f"{names.get(col.run_id, col.run_name)} @ step {col.step}"
        parts += ["", "─" * 40, head]
        if s is None:
            parts.append("(no answer at this step)")
            continue
        facts = [scores_text(s)]
        if s.tokens is not None:
            facts.append(f"{s.tokens} tokens")
        if s.seconds is not None:
            facts.append(f"{s.seconds:.2f} s")
        if s.settings:
            facts.append(", ".join(f"{k}={v}" for k, v in sorted(s.settings.items())))
        parts += ["  ".join(f for f in facts if f), "", s.output]
    return "\n".join(parts)
