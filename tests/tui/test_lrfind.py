"""Tests of the range-test screen: snapshots at 80x24 and 120x40, and writing its answer into the editor."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import aio, make_app, settle
from tuitrain.config import load_config, to_dict
from tuitrain.lrfind.curve import ramp_lr
from tuitrain.lrfind.probe import probe_config, with_lr
from tuitrain.store import Store
from tuitrain.tui.screens.lrfind import LRFindScreen

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def valley(lr: float) -> float:
    """A classic range-test curve: flat, a descent around 1e-3, a blow-up past 0.1."""
    z = math.log10(lr) + 3
    loss = 1.0 + 4.0 / (1.0 + math.exp(3.0 * z)) + 0.05 * math.sin(50 * z)
    return loss + (40.0 * (math.log10(lr) + 1) if lr > 0.1 else 0.0)


def make_probe(
    runs_dir: Path, sets: tuple[str, ...] = (), steps: int = 100, done: int | None = None
) -> str:
    """A range test in the store: a constructed curve, exactly as the trainer logs it. Finished,
    or (done=N) still running after N of its steps (this process's pid: the store reads it live)."""
    r = load_config(DEMO, sets=list(sets))
    cfg = probe_config(r.config, 1e-6, 1.0, steps)
    with Store(runs_dir) as s:
        run = s.create_run(
            to_dict(cfg), {**r.derived.as_dict(), "total_steps": steps}, name="demo-lr-find"
        )
        t0 = 1_767_268_000.0
        rows = []
        for i in range(steps if done is None else done):
            lr = ramp_lr(i, 1e-6, 1.0, steps)
            rows += [(i + 1, "lr", lr, t0 + i), (i + 1, "loss", valley(lr), t0 + i)]
        if rows:
            s.log_metrics(run.id, rows)
        if done is None:
            s.set_status(
                run.id, "completed", reason="range test ended: smoothed loss passed 4x its minimum"
            )
        else:
            s.mark_started(run.id, os.getpid())
    return run.id


async def read_once(pilot: Pilot, screen: LRFindScreen, polls: int = 1) -> None:
    """Wait (with a deadline) until the screen has read the store `polls` more times."""
    target = screen.polls + polls
    deadline = time.monotonic() + 30
    while screen.polls < target:
        assert time.monotonic() < deadline, "the screen never read the range test"
        await pilot.pause(0.05)


@pytest.mark.parametrize("size", SIZES)
def test_lrfind_screen(snap_compare, tmp_path, monkeypatch, size):
    """A finished range test: raw and smoothed loss over log10(lr), the suggestion marked and spelled out."""
    monkeypatch.chdir(tmp_path)
    # The header shows the run id (creation time + random suffix): pinned, so the picture is stable.
    monkeypatch.setattr("tuitrain.store.store.new_run_id", lambda now=None: "20260101-120000-lr01")
    rid = make_probe(Path("runs"))
    app = make_app()

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, rounds=1)
        pilot.app.push_screen(LRFindScreen(rid))
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


@aio
async def test_apply_writes_scaled_lr_into_editor(tmp_path, monkeypatch):
    """`a` writes the suggestion into the editor's optimizer.lr, divided by the lr_scaling factor."""
    monkeypatch.chdir(tmp_path)
    sets = ("batch.lr_scaling=linear", "batch.reference_batch=4")
    rid = make_probe(Path("runs"), sets)
    cfg = load_config(DEMO, sets=list(sets)).config
    app = make_app(start="edit", config=str(DEMO), sets=sets)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, rounds=1)
        editor = pilot.app.screen
        screen = LRFindScreen(rid, cfg, str(DEMO), editor.set_lr)
        pilot.app.push_screen(screen)
        deadline = time.monotonic() + 30
        while screen.sug is None or screen.sug.suggested_lr is None:
            assert time.monotonic() < deadline, "the screen never read the range test"
            await pilot.pause(0.05)
        text = screen.answer_text()
        assert "lr_scaling x" in text and "method: steepest" in text
        expected, scale = with_lr(cfg, screen.sug.suggested_lr)
        assert scale > 1
        await pilot.press("a")
        await pilot.pause()
        assert pilot.app.screen is editor
        assert editor.doc.data["optimizer"]["lr"] == pytest.approx(expected.optimizer.lr)


@aio
async def test_discard_leaves_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rid = make_probe(Path("runs"))
    app = make_app(start="edit", config=str(DEMO))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        editor = pilot.app.screen
        before = editor.doc.data["optimizer"]["lr"]
        pilot.app.push_screen(LRFindScreen(rid, None, None, editor.set_lr))
        await settle(pilot, rounds=1)
        await pilot.press("x")
        await pilot.pause()
        assert pilot.app.screen is editor and editor.doc.data["optimizer"]["lr"] == before


@aio
async def test_header_counts_the_ramp_not_the_full_run(tmp_path, monkeypatch):
    """A range test's derived total_steps is the full run's (600 here): the header counts the
    ramp's lr_find.steps (60)."""
    monkeypatch.chdir(tmp_path)
    r = load_config(DEMO)
    cfg = probe_config(r.config, 1e-6, 1.0, 60)
    with Store("runs") as s:
        run = s.create_run(to_dict(cfg), {**r.derived.as_dict(), "total_steps": 600}, name="p")
        s.log_metrics(run.id, [(1, "lr", 1e-6, 0.0), (1, "loss", 5.0, 0.0)])
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        screen = LRFindScreen(run.id)
        pilot.app.push_screen(screen)
        deadline = time.monotonic() + 30
        while screen.run is None:
            assert time.monotonic() < deadline, "the screen never read the range test"
            await pilot.pause(0.05)
        head = str(screen.query_one("#lrfind-head").render())
        assert "step 1/60" in head and "/600" not in head


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("done", [pytest.param(0, id="no-steps"), pytest.param(60, id="running")])
def test_lrfind_screen_running(snap_compare, tmp_path, monkeypatch, size, done):
    """A range test still running: before any step "waiting for the first steps"; after 60 of 100
    steps a dim provisional value, no `a` line, no "clear", the chart's mark grey."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tuitrain.store.store.new_run_id", lambda now=None: "20260101-120000-lr02")
    rid = make_probe(Path("runs"), done=done)
    app = make_app()

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, rounds=1)
        screen = LRFindScreen(rid)
        pilot.app.push_screen(screen)
        await read_once(pilot, screen)
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@aio
async def test_running_test_shows_no_answer_and_a_refuses(tmp_path, monkeypatch):
    """While the test runs `a` refuses (saying why) and the editor keeps its LR; once the test has
    finished the same screen offers the suggestion and `a` writes it."""
    monkeypatch.chdir(tmp_path)
    rid = make_probe(Path("runs"), done=0)
    cfg = load_config(DEMO).config
    app = make_app(start="edit", config=str(DEMO))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, rounds=1)
        editor = pilot.app.screen
        before = editor.doc.data["optimizer"]["lr"]
        screen = LRFindScreen(rid, cfg, str(DEMO), editor.set_lr)
        pilot.app.push_screen(screen)
        await read_once(pilot, screen)
        text = screen.answer_text()
        assert text == "waiting for the first steps…" and "finite points" not in text

        # 60 of 100 steps logged: a provisional value (the curve has one), dim, not applicable.
        with Store("runs") as s:
            rows = []
            for i in range(60):
                lr = ramp_lr(i, 1e-6, 1.0, 100)
                rows += [(i + 1, "lr", lr, float(i)), (i + 1, "loss", valley(lr), float(i))]
            s.log_metrics(rid, rows)
        await read_once(pilot, screen, 2)
        text = screen.answer_text()
        assert screen.sug is not None and screen.sug.suggested_lr is not None
        assert "provisional lr" in text and text.startswith("[dim]")
        assert "a: optimizer.lr" not in text and "clear answer" not in text
        assert screen.write_value() is None
        await pilot.press("a")
        await pilot.pause()
        assert pilot.app.screen is screen
        assert editor.doc.data["optimizer"]["lr"] == before
        assert any("still running" in str(n.message) for n in pilot.app._notifications)

        with Store("runs") as s:
            s.log_metrics(
                rid,
                [
                    (i + 1, k, v, float(i))
                    for i in range(60, 100)
                    for k, v in (
                        ("lr", ramp_lr(i, 1e-6, 1.0, 100)),
                        ("loss", valley(ramp_lr(i, 1e-6, 1.0, 100))),
                    )
                ],
            )
            s.set_status(rid, "completed", reason="range test ended")
        deadline = time.monotonic() + 30
        while not screen.finished:
            assert time.monotonic() < deadline, "the screen never saw the test finish"
            await pilot.pause(0.05)
        # The read that saw it finished holds every point (logged before the final status).
        assert len(screen.points) == 100
        assert "a: optimizer.lr" in screen.answer_text()
        expected, _ = with_lr(cfg, screen.sug.suggested_lr)
        await pilot.press("a")
        await pilot.pause()
        assert pilot.app.screen is editor
        assert editor.doc.data["optimizer"]["lr"] == pytest.approx(expected.optimizer.lr)
