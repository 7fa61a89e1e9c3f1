"""Provides asking a run's checkpoint a new prompt, torch-free: which weights answer (the run's
best weights if kept, else its newest complete checkpoint), the command line of the short-lived
process that loads them and generates (`python -m tuitrain.train.ask`), spawning it, and reading
its answer or its one-line error back. The CLI (`tuitrain ask`) and the TUI call this; neither
imports torch. Each answer is stored as a sample (source "ask", step = the checkpoint's step,
prompt_id "ask:" + a hash of the prompt)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitrain.runs.checkpoints import (
    CKPT_DIR,
    CheckpointError,
    best_dir,
    best_steps,
    choose_resume,
)

MODULE = "tuitrain.train.ask"
CHECKPOINTS = ("best", "last")
# The process's exit codes: the numbers of tuitrain.cli.exits (tests/runs/test_ask.py checks).
OK, FAILED, BAD_INPUT, NOT_FOUND = 0, 1, 2, 4
ERROR_PREFIX = "error: "


class AskError(Exception):
    """A question that cannot be asked (no such run, no checkpoint, not a language model); the
    message names the run and the fix; `code` is the exit code."""

    def __init__(self, message: str, code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """The weights one run answers with: a best-N folder (`kind` best) or a step-N checkpoint
    (`kind` step) at `step`; `note` says why it is not what was asked (best weights not kept)."""

    run_id: str
    run_name: str
    run_dir: Path
    kind: str  # best | step
    path: Path
    step: int
    note: str | None = None
    data_format: str | None = None  # the run's record format (chat/instruction: templated)

    @property
    def label(self) -> str:
        """`best-300` or `step-300`, as the sample's settings record it."""
        return self.path.name


def prompt_id(prompt: str) -> str:
    """`ask:` + the first 8 hex digits of the prompt's SHA-1: the same question asked again (of
    any run or checkpoint) lines up in one row of the samples grid."""
    return "ask:" + hashlib.sha1(prompt.strip().encode("utf-8")).hexdigest()[:8]


def choose(run: Any, checkpoint: str = "best") -> Target:
    """The weights `run` (a store RunInfo) answers with for `checkpoint` best or last; AskError
    (NOT_FOUND) when it has none, naming the run and how to get one."""
    if checkpoint not in CHECKPOINTS:
        raise AskError(f"--checkpoint {checkpoint!r}: choose best or last")
    task = ((run.config or {}).get("model") or {}).get("task")
    if task not in (None, "causal-lm"):
        raise AskError(
            f"run {run.id} ({run.name}) is a {task} model: only causal-lm runs answer prompts"
        )
    run_dir = Path(run.run_dir)
    data = (run.summary or {}).get("data")
    fmt = data.get("format") if isinstance(data, dict) else None
    note = None
    if checkpoint == "best":
        best = best_steps(run_dir)
        want = (run.summary or {}).get("best_step")
        if best:
            step = want if want in best else best[-1]
            return Target(
                run.id, run.name, run_dir, "best", best_dir(run_dir, step), step, None, fmt
            )
        note = "no best weights kept (training.save_best keeps them): the newest checkpoint answers"
    try:
        path, _ = choose_resume(run_dir, hashes=False)
    except CheckpointError:
        raise AskError(
            f"run {run.id} ({run.name}) has no complete checkpoint in {run_dir / CKPT_DIR}: a run"
            " saves one every training.save_every steps (at each evaluation when unset) and at its"
            " end; ask again once it has saved one, or ask another run",
            NOT_FOUND,
        ) from None
    return Target(run.id, run.name, run_dir, "step", path, int(path.name[5:]), note, fmt)


def plan(store: Any, run_refs: Sequence[str], checkpoint: str = "best") -> list[Target]:
    """The weights each run (id or unique name) answers with, checked before anything loads;
    AskError (NOT_FOUND) for an unknown run."""
    from tuitrain.store import RunNotFound

    if not run_refs:
        raise AskError("name at least one run to ask")
    out = []
    for ref in run_refs:
        try:
            run = store.get_run(ref)
        except RunNotFound as exc:
            raise AskError(str(exc), NOT_FOUND) from None
        out.append(choose(run, checkpoint))
    return out


def check_prompt(prompt: str, max_new_tokens: int | None = None) -> str:
    """The prompt, refused (AskError) when empty, or when `max_new_tokens` is given and below 1."""
    if not str(prompt).strip():
        raise AskError("the prompt is empty: type a question for the model")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise AskError(f"--max-new-tokens {max_new_tokens}: give a number >= 1")
    return str(prompt)


def ask_argv(
    runs_dir: str | Path,
    run_ids: Sequence[str],
    prompt: str,
    checkpoint: str = "best",
    max_new_tokens: int | None = None,
) -> list[str]:
    """The command line of the process that answers `prompt` with each run's checkpoint and
    stores the answers; it prints them as a JSON list on stdout (see parse_answers)."""
    argv = [sys.executable, "-m", MODULE, "--runs-dir", str(runs_dir)]
    for rid in run_ids:
        argv.append(f"--run={rid}")
    argv += ["--checkpoint", checkpoint, "--format", "json", f"--prompt={prompt}"]
    if max_new_tokens is not None:
        argv.append(f"--max-new-tokens={int(max_new_tokens)}")
    return argv


def ask_env() -> dict[str, str]:
    """The environment of the answering process: ours, with library chatter off (its stderr is
    the error line the caller shows) and no tokenizer threads."""
    env = dict(os.environ)
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def spawn_ask(
    runs_dir: str | Path,
    run_ids: Sequence[str],
    prompt: str,
    checkpoint: str = "best",
    max_new_tokens: int | None = None,
) -> subprocess.Popen:
    """Start the answering process (stdout and stderr captured as text; stdin closed). Wait with
    `communicate()`; exit 0: parse_answers(stdout); otherwise error_line(stderr) is the one-line
    reason (no checkpoint, no such run...) and the return code follows tuitrain.cli.exits."""
    return subprocess.Popen(
        ask_argv(runs_dir, run_ids, prompt, checkpoint, max_new_tokens),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ask_env(),
    )


def parse_answers(stdout: str) -> list[dict]:
    """The answers the process printed: one object per run (run, run_name, step, checkpoint,
    sample_id, prompt_id, prompt, output, tokens, seconds, settings, repetition, note)."""
    return json.loads(stdout) if stdout.strip() else []


def format_answers(answers: list[dict], fmt: str = "text") -> str:
    """The answers as `tuitrain ask` prints them: JSON, or per run a header line and the text."""
    if fmt == "json":
        return json.dumps(answers, indent=2)
    out = []
    for a in answers:
        note = f"\n({a['note']})" if a.get("note") else ""
        out.append(
            f"{a['run_name']} ({a['run']}) @ step {a['step']}, {a['checkpoint']}: "
            f"{a['tokens']} tokens in {a['seconds']:.2f} s, repetition {a['repetition']:.2f}{note}"
        )
        out.append(a["output"].strip() or "(empty answer)")
        out.append("")
    return "\n".join(out).rstrip("\n")


def error_line(stderr: str, code: int | None = None) -> str:
    """The process's reason for failing: its last `error: ` line (without the prefix), else its
    last line, else the exit code."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(ERROR_PREFIX):
            return ln[len(ERROR_PREFIX) :]
    if lines:
        return lines[-1]
    return f"the answering process failed (exit {code})"
