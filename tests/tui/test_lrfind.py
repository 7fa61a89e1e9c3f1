"""Tests of the range-test screen: snapshots at 80x24 and 120x40, and writing its answer into the editor."""

from __future__ import annotations

import math
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


def make_probe(runs_dir: Path, sets: tuple[str, ...] = (), steps: int = 100) -> str:
    """A finished range test in the store: a constructed curve, exactly as the trainer logs it."""
    r = load_config(DEMO, sets=list(sets))
    cfg = probe_config(r.config, 1e-6, 1.0, steps)
    with Store(runs_dir) as s:
        run = s.create_run(
            to_dict(cfg), {**r.derived.as_dict(), "total_steps": steps}, name="demo-lr-find"
        )
        t0 = 1_767_268_000.0
        rows = []
        for i in range(steps):
            lr = ramp_lr(i, 1e-6, 1.0, steps)
            rows += [(i + 1, "lr", lr, t0 + i), (i + 1, "loss", valley(lr), t0 + i)]
        s.log_metrics(run.id, rows)
        s.set_status(
            run.id, "completed", reason="range test ended: smoothed loss passed 4x its minimum"
        )
    return run.id


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
