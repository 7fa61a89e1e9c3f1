"""Asking a checkpoint from the samples screen (`p`): the prompt dialog, the refusal for a run
still training, the wait on the asking process (real processes: one that stores its answer as
spawn_ask's child does, one that fails with a one-line error, one that hangs past the bound),
and the new sample showing as a row of source "ask"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tui.conftest import aio, make_app, until
from tests.tui.fixture_db import add_samples
from tests.tui.test_samples import FAST, open_samples, shown_text
from tuitrain.store import Store
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.screens.samples_ask import wait_answer

ROOT = Path(__file__).resolve().parents[2]
ANSWER = "It parses a JSON string into a Python object."


def answering(at: str = "best", gate: str = "") -> str:
    """What tuitrain.runs.ask's child does once it has an answer (the model part left out): store
    it as a sample of source "ask" at the checkpoint's step (the best step's, or with `at` last,
    the newest one's: a run that kept no best weights), print the answers as JSON, exit 0.
    With a `gate` path it first waits (30 s at most) until that file exists."""
    return f"""
import hashlib, json, os, sys, time
from tuitrain.store import Store
runs_dir, prompt, *run_ids = sys.argv[1:]
deadline = time.monotonic() + 30
while {gate!r} and not os.path.exists({gate!r}) and time.monotonic() < deadline:
    time.sleep(0.05)
answers = []
with Store(runs_dir) as store:
    for rid in run_ids:
        run = store.get_run(rid)
        step = run.summary["best_step"] if {at!r} == "best" else run.last_step
        note = None if {at!r} == "best" else "no best weights kept: the newest checkpoint answers"
        store.samples.add(rid, [{{
            "step": step, "prompt_id": "ask:" + hashlib.sha1(prompt.encode()).hexdigest()[:8],
            "source": "ask", "prompt": prompt, "output": {ANSWER!r}, "tokens": 11,
            "seconds": 0.4, "repetition": 0.0, "settings": {{"do_sample": False}},
        }}])
        answers.append({{"run": rid, "run_name": run.name, "step": step, "note": note}})
print(json.dumps(answers))
"""


FAILS = """
import sys
print("loading the checkpoint...", file=sys.stderr)
print("error: run x has no complete checkpoint in runs/x/checkpoints", file=sys.stderr)
print("(0 files removed)", file=sys.stderr)
sys.exit(4)
"""


def spawner(script: str, calls: list):
    """spawn_ask's signature over a real child running `script`."""

    def spawn(runs_dir, run_ids, prompt, checkpoint="best", max_new_tokens=None):
        calls.append((list(run_ids), prompt, checkpoint))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(
            [sys.executable, "-c", script, str(runs_dir), prompt, *run_ids],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    return spawn


def test_wait_answer_returns_none_on_success_and_the_last_stderr_line_on_failure():
    ok = subprocess.Popen([sys.executable, "-c", "pass"], stderr=subprocess.PIPE)
    assert wait_answer(ok, lambda: False) == (None, [])
    bad = subprocess.Popen([sys.executable, "-c", FAILS], stderr=subprocess.PIPE, text=True)
    assert wait_answer(bad, lambda: False) == (
        "run x has no complete checkpoint in runs/x/checkpoints",
        [],
    )
    last = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.exit('CUDA out of memory')"],
        stderr=subprocess.PIPE,
    )
    assert wait_answer(last, lambda: False) == ("CUDA out of memory", [])
    silent = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert wait_answer(silent, lambda: False) == ("the answering process failed (exit 3)", [])


def test_wait_answer_is_bounded_and_stops_a_hung_process():
    hung = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stderr=subprocess.PIPE
    )
    try:
        error, _ = wait_answer(hung, lambda: False, timeout=0.5)
        assert error is not None and error.startswith("no answer after")
        assert hung.poll() is not None  # killed, reaped
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.wait()


@aio
async def test_p_asks_the_compared_runs_best_checkpoints_and_the_answer_shows(runs):
    add_samples(Path("runs"), runs)
    calls: list = []
    app = make_app(start="compare", compare=[runs["early"], runs["completed"]], settings=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_samples(pilot)
        gate = Path("answer-now").absolute()
        screen.spawn = spawner(answering(gate=str(gate)), calls)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the prompt dialog")
        assert "Ask low-lr, baseline @ best checkpoint" in app.screen.title_text
        await pilot.press("enter")  # blank: refused in the dialog
        await pilot.pause()
        assert "the prompt is empty" in shown_text(app.screen, "#prompt-error")
        await pilot.press(*"What does json.loads do?", "enter")
        await until(pilot, lambda: app.screen is screen, "the dialog closed")
        assert screen.asking and "asking low-lr, baseline @ best checkpoint" in screen.asking
        await until(  # the status line is drawn on the next refresh
            pilot,
            lambda: (
                "asking low-lr, baseline @ best checkpoint…"
                in shown_text(screen, "#samples-status")
            ),
            "the asking line",
        )
        await pilot.press("p")  # one question at a time
        assert not isinstance(app.screen, PromptDialog)
        gate.touch()  # the child answers now
        await until(pilot, lambda: screen.asking is None, "the answer", timeout=60)
        row = lambda: next((r for r in screen.grid.rows if r.source == "ask"), None)  # noqa: E731
        await until(pilot, lambda: row() is not None, "the ask row", timeout=30)
        assert calls == [([runs["early"], runs["completed"]], "What does json.loads do?", "best")]
        assert [c.output if c else None for c in row().cells] == [ANSWER, ANSWER]
        # The asked prompt is selected: a poll may show the row before the answer's own read
        # (the one that selects it) has landed.
        await until(pilot, lambda: screen.selected_id() == row().prompt_id, "the ask row selected")
        await until(pilot, lambda: ANSWER[:20] in shown_text(screen, "#samples-answers"), "shown")
        assert "asked of a checkpoint" in shown_text(screen, "#samples-prompt")
    with Store("runs") as store:
        asked = [s for s in store.samples.for_runs([runs["early"]]) if s.source == "ask"]
    assert [(s.step, s.prompt) for s in asked] == [(150, "What does json.loads do?")]


@aio
async def test_a_failed_ask_shows_the_processes_one_line_error(runs):
    add_samples(Path("runs"), runs)
    app = make_app(start="watch", run=runs["completed"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        screen.spawn = spawner(FAILS, [])
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the prompt dialog")
        await pilot.press(*"hello", "enter")
        await until(pilot, lambda: screen.asking is None, "the failure", timeout=60)
        await until(
            pilot,
            lambda: (
                "asking baseline failed: run x has no complete checkpoint in"
                in shown_text(screen, "#samples-status")
            ),
            "the error line",
        )
        assert not any(r.source == "ask" for r in screen.grid.rows)


@aio
async def test_p_on_a_run_still_training_asks_nothing(runs):
    add_samples(Path("runs"), runs)
    calls: list = []
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        screen.spawn = spawner(answering(), calls)
        shown = len(app._notifications)
        await pilot.press("p")
        await until(pilot, lambda: len(app._notifications) > shown, "the refusal")
        texts = [str(n.message) for n in app._notifications]
        assert any("warmup-10 is still training: ask its checkpoints once" in t for t in texts)
        await pilot.pause()
        assert app.screen is screen and calls == [] and screen.asking is None


@aio
async def test_an_answer_from_another_steps_checkpoint_shows_every_eval(runs):
    """low-lr kept no best weights: its newest checkpoint (step 250) answers while the screen
    shows its best step (150); the screen switches to every eval so the answer's row shows."""
    add_samples(Path("runs"), runs)
    app = make_app(start="watch", run=runs["early"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        screen.spawn = spawner(answering("last"), [])
        await pilot.press("s")
        await until(pilot, lambda: screen.which == "best" and len(screen.grid.columns) == 1, "best")
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the prompt dialog")
        await pilot.press(*"What does json.loads do?", "enter")
        await until(pilot, lambda: screen.which == "all", "every eval", timeout=60)
        await until(
            pilot,
            lambda: screen.grid.rows and screen.selected_row().source == "ask",
            "the ask row selected",
            timeout=30,
        )
        row = screen.selected_row()
        assert [c.step for c, s in zip(screen.grid.columns, row.cells, strict=True) if s] == [250]
        await until(
            pilot,
            lambda: (
                "low-lr: no best weights kept: the newest checkpoint answers"
                in shown_text(screen, "#samples-status")
            ),
            "the note",
        )


@pytest.mark.e2e
@aio
async def test_p_asks_a_real_checkpoint_through_tuitrain_runs_ask(sft_copy, tmp_path, monkeypatch):
    """The real path: `p` spawns tuitrain.runs.ask's process, which loads the SFT run's best
    weights, answers and stores the sample; the row shows (torch is loaded there, not here:
    tests/tui/test_tui_boundaries.py)."""
    runs_dir, run_id = sft_copy
    monkeypatch.chdir(tmp_path)
    app = make_app(start="watch", run=run_id, runs_dir=runs_dir, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        assert screen.grid.columns and any(r.source == "val" for r in screen.grid.rows)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the prompt dialog")
        await pilot.press(*"What does json.loads do?", "enter")
        await until(pilot, lambda: screen.asking is None, "the answer", timeout=300)
        assert not shown_text(screen, "#samples-status").startswith("asking")
        await until(
            pilot,
            lambda: any(r.source == "ask" for r in screen.grid.rows),
            "the ask row",
            timeout=30,
        )
        await until(pilot, lambda: screen.selected_row().source == "ask", "the ask row selected")
