"""The open TUI: a run that finishes while it is open raises a toast and writes the terminal's
desktop-notification sequence (OSC 777 here) to the terminal; the sequences themselves per
terminal, inside tmux's passthrough, and the bell as the fallback."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tuitrain.notify.terminal import detect, sequence, tmux_wrap
from tuitrain.store import InvalidValue, Store
from tuitrain.tui.app import TuitrainApp


def test_detect_by_terminal_and_override():
    assert detect({"TERM": "xterm-kitty"}) == "osc99"
    assert detect({"TERM_PROGRAM": "iTerm.app"}) == "osc9"
    assert detect({"LC_TERMINAL": "iTerm2", "TERM": "xterm-256color"}) == "osc9"
    assert detect({"TERM_PROGRAM": "WezTerm"}) == "osc777"
    assert detect({"TERM": "foot"}) == "osc777"
    assert detect({"TERM": "xterm-256color"}) == "bell"
    assert detect({"TERM": "xterm-kitty", "TUITRAIN_TERM_NOTIFY": "off"}) == "off"
    with pytest.raises(InvalidValue, match="TUITRAIN_TERM_NOTIFY='loud' is not one of"):
        detect({"TUITRAIN_TERM_NOTIFY": "loud"})


def test_sequences():
    body = "run r (x) on h\nbest val_loss 1.2\n→ tuitrain show r"
    assert (
        sequence("osc9", "t", body)
        == "\x1b]9;t: run r (x) on h — best val_loss 1.2 — → tuitrain show r\x07\a"
    )
    assert sequence("osc777", "a;b", "x\x1b[31m") == "\x1b]777;notify;a,b;x [31m\x07\a"
    assert sequence("osc99", "t", "b").startswith("\x1b]99;i=tuitrain:d=0;t\x1b\\")
    assert sequence("bell", "t", "b") == "\a" and sequence("off", "t", "b") == ""
    wrapped = sequence("osc9", "t", "b", tmux=True)
    assert wrapped == "\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\\\a"
    assert tmux_wrap("\x1b]99;a\x1b\\\x1b]99;b\x1b\\").count("\x1bPtmux;") == 2


def test_open_tui_notifies_a_run_that_finishes(tmp_path, monkeypatch):
    monkeypatch.setenv("TUITRAIN_TERM_NOTIFY", "osc777")
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("TUITRAIN_NOTIFY_CONFIG", str(tmp_path / "notify.yaml"))
    (tmp_path / "notify.yaml").write_text("events: {completed: true}\n")
    runs = tmp_path / "runs"
    store = Store(runs)
    run = store.create_run({"run": {}}, {"total_steps": 30}, name="fin")
    store.mark_started(run.id, os.getpid())  # alive: this test process is its "trainer"
    app = TuitrainApp(runs_dir=runs)

    async def go() -> list[str]:
        written: list[str] = []
        async with app.run_test(size=(80, 24)) as pilot:
            driver = app._driver
            real = driver.write
            driver.write = lambda data: (written.append(data), real(data))[1]  # Textual's driver
            deadline = time.monotonic() + 20
            while app.terminal_notifier.watcher is None or app.terminal_notifier.watcher.first:
                assert time.monotonic() < deadline, "the TUI's notifier never polled"
                await pilot.pause(0.1)
            store.set_status(run.id, "completed", summary={"best_value": 1.5, "best_step": 30,
                                                           "best_metric": "val_loss"})  # fmt: skip
            while not any("\x1b]777;notify;tuitrain: fin completed;" in w for w in written):
                assert time.monotonic() < deadline + 20, f"no sequence; written: {written[-5:]}"
                await pilot.pause(0.2)
            toasts = [n for n in app._notifications]
            assert any(
                n.title == "fin completed" and "best val_loss 1.5" in n.message for n in toasts
            )
        return written

    written = asyncio.run(go())
    seq = next(w for w in written if "\x1b]777;" in w)
    assert "best val_loss 1.5 at step 30" in seq and seq.endswith("\x07\a")
    store.close()
