"""Asking a checkpoint from the samples screen (`p`): the prompt dialog, the refusal for a run
still training, the wait on the asking process (real processes: one that stores its answer as
spawn_ask's child does, one that fails with a one-line error, one that hangs past the bound),
and the new sample showing as a row of source "ask"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.tui.conftest import aio, make_app, until
from tests.tui.fixture_db import add_samples
from tests.tui.test_samples import FAST, open_samples, shown_text
from tuitrain.store import Store
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.screens.samples_ask import wait_answer

ROOT = Path(__file__).resolve().parents[2]
ANSWER = "It parses a JSON string into a Python object."
# What tuitrain.runs.ask's child does once it has an answer (the model part left out): store it
# as a sample of source "ask" at the asked checkpoint's step, and exit 0.
STORES_ANSWER = f"""
import hashlib, sys
from tuitrain.store import Store
runs_dir, prompt, *run_ids = sys.argv[1:]
with Store(runs_dir) as store:
    for rid in run_ids:
        step = store.get_run(rid).summary["best_step"]
        store.samples.add(rid, [{{
            "step": step, "prompt_id": "ask:" + hashlib.sha256(prompt.encode()).hexdigest()[:12],
            "source": "ask", "prompt": prompt, "output": {ANSWER!r}, "tokens": 11,
            "seconds": 0.4, "repetition": 0.0, "settings": {{"do_sample": False}},
        }}])
"""
FAILS = """
import sys
print("loading the checkpoint...", file=sys.stderr)
print("no checkpoint in runs/x/checkpoints: save one with k in the monitor", file=sys.stderr)
sys.exit(2)
"""


def spawner(script: str, calls: list):
    """spawn_ask's signature over a real child running `script`."""

    def spawn(runs_dir, run_ids, prompt, checkpoint="best", max_new_tokens=None):
        calls.append((list(run_ids), prompt, checkpoint))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(
            [sys.executable, "-c", script, str(runs_dir), prompt, *run_ids],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )

    return spawn


def test_wait_answer_returns_none_on_success_and_the_last_stderr_line_on_failure():
    ok = subprocess.Popen([sys.executable, "-c", "pass"], stderr=subprocess.PIPE)
    assert wait_answer(ok, lambda: False) is None
    bad = subprocess.Popen([sys.executable, "-c", FAILS], stderr=subprocess.PIPE)
    assert wait_answer(bad, lambda: False) == (
        "no checkpoint in runs/x/checkpoints: save one with k in the monitor"
    )
    silent = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert wait_answer(silent, lambda: False) == "the asking process exited with code 3"


def test_wait_answer_is_bounded_and_stops_a_hung_process():
    hung = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stderr=subprocess.PIPE
    )
    try:
        error = wait_answer(hung, lambda: False, timeout=0.5)
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
        screen.spawn = spawner(STORES_ANSWER, calls)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the prompt dialog")
        assert "Ask low-lr, baseline @ best checkpoint" in app.screen.title_text
        await pilot.press("enter")  # blank: refused in the dialog
        await pilot.pause()
        assert "type a prompt" in shown_text(app.screen, "#prompt-error")
        await pilot.press(*"What does json.loads do?", "enter")
        await until(pilot, lambda: app.screen is screen, "the dialog closed")
        assert screen.asking and "asking low-lr, baseline @ best checkpoint" in screen.asking
        await until(pilot, lambda: screen.asking is None, "the answer", timeout=60)
        row = lambda: next((r for r in screen.grid.rows if r.source == "ask"), None)  # noqa: E731
        await until(pilot, lambda: row() is not None, "the ask row", timeout=30)
        assert calls == [([runs["early"], runs["completed"]], "What does json.loads do?", "best")]
        assert [c.output if c else None for c in row().cells] == [ANSWER, ANSWER]
        assert screen.selected_id() == row().prompt_id  # the asked prompt is selected
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
        status = shown_text(screen, "#samples-status")
        assert "asking baseline failed: no checkpoint in runs/x/checkpoints" in status
        assert not any(r.source == "ask" for r in screen.grid.rows)


@aio
async def test_p_on_a_run_still_training_asks_nothing(runs):
    add_samples(Path("runs"), runs)
    calls: list = []
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_samples(pilot)
        screen.spawn = spawner(STORES_ANSWER, calls)
        shown = len(app._notifications)
        await pilot.press("p")
        await until(pilot, lambda: len(app._notifications) > shown, "the refusal")
        texts = [str(n.message) for n in app._notifications]
        assert any("warmup-10 is still training: ask its checkpoints once" in t for t in texts)
        await pilot.pause()
        assert app.screen is screen and calls == [] and screen.asking is None
