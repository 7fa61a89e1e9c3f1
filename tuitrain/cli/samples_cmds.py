"""Provides `tuitrain samples` (the generation samples of runs, side by side: table, Markdown or
JSON) and `tuitrain ask` (a new prompt answered by runs' checkpoints in a short-lived process)."""

from __future__ import annotations

import argparse
import sys

from tuitrain.cli import exits
from tuitrain.cli.exits import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `samples` and `ask`."""
    p = sub.add_parser(
        "samples",
        help="what runs answered at each evaluation, next to the reference, with scores",
        description="The generation samples of one or more runs: prompts down the side, one "
        "column per run@step, the reference answer (held-out validation prompts) beside them, "
        "and each answer's scores (exact match, similarity, repetition). Exit codes: 0 shown, "
        "2 bad --step, 4 run not found, 1 no samples to show.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run id or unique name")
    p.add_argument(
        "--step",
        default=None,
        metavar="N|best|last|all",
        help="which evaluations: a step, each run's best (its best_step, else lowest val_loss), "
        "its last, or all (default: all for one run, best for several)",
    )
    p.add_argument(
        "--format",
        choices=("table", "md", "json"),
        default="table",
        help="table (wrapped to the terminal), md (a Markdown table to paste) or json (a list "
        "of {run, run_name, step, prompt_id, source, prompt, messages, reference, output, "
        "exact_match, similarity, repetition, tokens, seconds, settings, id, created})",
    )
    p.set_defaults(handler=cmd_samples)

    a = sub.add_parser(
        "ask",
        help="ask runs' checkpoints a new prompt (stored as a sample)",
        description="Answer PROMPT with each run's checkpoint (its best weights if kept, else "
        "its newest complete checkpoint) in a short-lived process, with the run's chat template "
        "and generation settings; each answer is stored as a sample (see `tuitrain samples`). "
        "Exit codes: 0 answered, 2 bad input, 4 run or checkpoint not found, 1 failed.",
    )
    a.add_argument("runs", nargs="+", metavar="RUN", help="run id or unique name")
    a.add_argument("prompt", metavar="PROMPT", help="the question (quote it)")
    a.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="best weights (training.save_best; falls back to the newest checkpoint) or the "
        "newest complete checkpoint",
    )
    a.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="tokens to generate (default: the run's generation.max_new_tokens)",
    )
    a.add_argument("--format", choices=("text", "json"), default="text")
    a.set_defaults(handler=cmd_ask)


def cmd_samples(args: argparse.Namespace) -> int:
    """Print the samples of the runs at the chosen steps."""
    from tuitrain.cli.table import terminal_width
    from tuitrain.runs import liveness
    from tuitrain.samples import export
    from tuitrain.samples.select import grid, parse_which, pick_steps
    from tuitrain.store import Store

    text = args.step if args.step is not None else ("all" if len(args.runs) == 1 else "best")
    try:
        which = parse_which(text)
    except ValueError as exc:
        raise CommandError(str(exc), exits.BAD_INPUT) from None
    with Store(args.runs_dir) as store:
        runs = [liveness.get_run(store, ref) for ref in args.runs]  # RunNotFound: exit 4
        steps = {r.id: pick_steps(store, r, which) for r in runs}
        if not any(steps.values()):
            raise CommandError(_none_found(store, runs, which), _none_code(store, runs))
        for r in runs:
            if not steps[r.id]:
                print(f"note: {_why_none(store, r, which)}", file=sys.stderr)
        if args.format == "json":
            rows = [s for r in runs for s in store.samples.for_runs([r.id], steps=steps[r.id])]
            print(export.to_json(rows, {r.id: r.name for r in runs}))
            return exits.OK
        g = grid(store, runs, which)
    if args.format == "md":
        print(export.markdown(g))
    else:
        print(export.text(g, terminal_width() or 80))
    return exits.OK


def _why_none(store, run, which) -> str:
    have = store.samples.steps(run.id)
    if not have:
        return (
            f"run {run.id} ({run.name}) has no samples: causal-lm runs answer generation.prompts "
            "(and, for chat data, generation.val_prompts held-out prompts) at each evaluation"
        )
    shown = ", ".join(map(str, have[:12])) + (", ..." if len(have) > 12 else "")
    return f"run {run.id} ({run.name}) has no samples at step {which}; it has some at {shown}"


def _none_found(store, runs, which) -> str:
    return "; ".join(_why_none(store, r, which) for r in runs)


def _none_code(store, runs) -> int:
    """2 when the runs have samples but not at the asked step (a bad --step), else 1."""
    return exits.BAD_INPUT if any(store.samples.steps(r.id) for r in runs) else exits.FAILED


def cmd_ask(args: argparse.Namespace) -> int:
    """Check the runs and their checkpoints here (no torch), then let the short-lived process
    answer and print what it stored."""
    from tuitrain.runs.ask import (
        AskError,
        check_prompt,
        error_line,
        format_answers,
        parse_answers,
        plan,
        spawn_ask,
    )
    from tuitrain.store import Store

    try:
        check_prompt(args.prompt, args.max_new_tokens)
        with Store(args.runs_dir) as store:
            targets = plan(store, args.runs, args.checkpoint)
    except AskError as exc:
        raise CommandError(str(exc), exc.code) from None
    for t in targets:
        if t.note:
            print(f"note: {t.run_name}: {t.note}", file=sys.stderr)
    proc = spawn_ask(
        args.runs_dir,
        [t.run_id for t in targets],
        args.prompt,
        args.checkpoint,
        args.max_new_tokens,
    )
    try:
        out, err = proc.communicate()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        known = (exits.FAILED, exits.BAD_INPUT, exits.NOT_FOUND)  # the process's codes
        code = proc.returncode if proc.returncode in known else exits.FAILED
        raise CommandError(error_line(err, proc.returncode), code)
    answers = parse_answers(out)
    for a in answers:
        a["note"] = None if args.format == "text" else a.get("note")  # said on stderr already
    print(format_answers(answers, args.format))
    return exits.OK
