"""Pilot tests: the editor never loses an edit. A save changes only the edited lines of the user's
file (comments, order, extends and envs kept); saving over a file asks; `n` edits a copy; leaving,
opening another file or quitting with unsaved edits asks first."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tests.tui.conftest import aio, make_app, settle
from tests.tui.test_editor import _set
from tuitrain.config import load_config
from tuitrain.tui.configdoc import DEMO_CONFIG
from tuitrain.tui.dialogs.confirm import ConfirmDialog
from tuitrain.tui.dialogs.prompt import PromptDialog
from tuitrain.tui.screens.editor import EditorScreen

BASE = """\
# base settings shared by my runs
optimizer:
  name: adamw
  weight_decay: 0.01
"""

COMMENTED = """\
# My run: a commented config, written by hand.
extends: base.yaml   # the shared base
run:
  name: mine   # keep this name
model:
  task: causal-lm
  tokenizer: bytes
  arch: {type: gpt2, hidden_size: 64, num_layers: 2, num_heads: 4, max_position_embeddings: 128}
data:
  source: python-stdlib
  max_bytes: 200000
  max_seq_length: 32
optimizer:
  # the LR I am tuning
  lr: 1e-3    # try lower next
training:
  max_steps: 100
  eval_every: 50
envs:
  fast:
    training:
      max_steps: 10
"""


@pytest.fixture
def commented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("base.yaml").write_text(BASE)
    Path("mine.yaml").write_text(COMMENTED)
    return Path("mine.yaml")


def _diff(a: str, b: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]


async def _save(pilot, path: str | None = None) -> None:
    await pilot.press("ctrl+s")
    await pilot.pause()
    assert isinstance(pilot.app.screen, PromptDialog)
    if path is not None:
        pilot.app.screen.query_one("#prompt-input", Input).value = path
    await pilot.press("enter")
    await pilot.pause()


def _status(app) -> str:
    return str(app.screen.query_one("#editor-status", Static).render())


@aio
async def test_saving_one_lr_changes_only_that_line(commented):
    app = make_app(start="edit", config=str(commented))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        assert "unsaved" not in _status(app)
        await _set(pilot, "optimizer.lr", "3e-4")
        assert "1 unsaved" in _status(app)
        await _save(pilot)  # the default is the opened file
        # Over an existing file: asked first, and nothing is written before the answer.
        assert isinstance(app.screen, ConfirmDialog)
        assert commented.read_text() == COMMENTED
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)
        assert "unsaved" not in _status(app)
        assert _diff(COMMENTED, commented.read_text()) == [
            "-  lr: 1e-3    # try lower next",
            "+  lr: 3e-4    # try lower next",
        ]
        # Confirmed once for the file this editor opened: the next save does not ask again.
        await _set(pilot, "optimizer.lr", "2e-4")
        await _save(pilot)
        assert isinstance(app.screen, EditorScreen)
        assert "lr: 2e-4    # try lower next" in commented.read_text()
    cfg = load_config(commented).config
    assert cfg.optimizer.lr == 2e-4 and cfg.optimizer.weight_decay == 0.01  # extends still read
    assert load_config(commented, env="fast").config.training.max_steps == 10  # envs kept


@aio
async def test_saving_elsewhere_asks_before_replacing_a_file_and_keeps_extends_working(commented):
    Path("sub").mkdir()
    Path("sub/other.yaml").write_text("# someone else's file\n")
    app = make_app(start="edit", config=str(commented))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await _set(pilot, "training.max_steps", "40")
        await _save(pilot, "sub/other.yaml")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # no: the other file stays as it was
        await pilot.pause()
        assert Path("sub/other.yaml").read_text() == "# someone else's file\n"
        await _save(pilot, "sub/new.yaml")  # a new file: no question
        assert isinstance(app.screen, EditorScreen)
    text = Path("sub/new.yaml").read_text()
    assert "extends: ../base.yaml" in text and "# the shared base" in text  # rebased
    assert "# the LR I am tuning" in text
    assert load_config("sub/new.yaml").config.training.max_steps == 40
    assert commented.read_text() == COMMENTED


@aio
async def test_back_open_and_quit_ask_before_dropping_unsaved_edits(commented):
    app = make_app(start="edit", config=str(commented))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await _set(pilot, "optimizer.lr", "3e-4")
        for key in ("escape", "ctrl+o", "ctrl+q"):
            app.screen.query_one("#sections").focus()
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog), key
            assert "unsaved edit" in str(app.screen.question), key
            await pilot.press("n")  # keep editing
            await pilot.pause()
            assert isinstance(app.screen, EditorScreen), key
            assert app.screen.doc.data["optimizer"]["lr"] == 3e-4
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("y")  # drop them: back to the runs list
        await pilot.pause()
        assert type(app.screen).__name__ == "RunsScreen"
    assert commented.read_text() == COMMENTED


@aio
async def test_new_config_is_a_copy_beside_the_runs_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    package_text = DEMO_CONFIG.read_text()
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await pilot.press("n")
        await settle(pilot, rounds=1)
        assert isinstance(app.screen, EditorScreen)
        copy = tmp_path / "new-config.yaml"
        assert Path(app.screen.doc.source).resolve() == copy.resolve()
        assert copy.read_text() == package_text
        await _set(pilot, "optimizer.lr", "3e-4")
        await _save(pilot)  # the copy this editor made: still asked once
        await pilot.press("y")
        await pilot.pause()
        assert "lr: 3e-4" in copy.read_text()
        await pilot.press("escape")  # saved: leaves without a question
        await pilot.pause()
        await pilot.press("n")  # a second new config, left untouched: its copy goes on leaving
        await settle(pilot, rounds=1)
        second = tmp_path / "new-config-2.yaml"
        assert second.is_file() and Path(app.screen.doc.source).resolve() == second.resolve()
        await pilot.press("escape")
        await pilot.pause()
        assert not second.exists() and copy.is_file()
    assert DEMO_CONFIG.read_text() == package_text


@aio
async def test_arrows_move_between_fields_and_question_mark_lists_every_key(commented):
    from tuitrain.tui.dialogs.help import KeysDialog

    app = make_app(start="edit", config=str(commented))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await app.screen.jump_to("optimizer.name")  # a choice field, then number fields
        await pilot.pause()
        await pilot.press("down")
        await pilot.pause()
        assert app.focused.id == "f-optimizer--lr"
        await pilot.press("down")
        await pilot.pause()
        assert app.focused.id == "f-optimizer--weight_decay"
        await pilot.press("up", "up")
        await pilot.pause()
        assert app.focused.id == "f-optimizer--name"
        assert not app.screen.query_one("#f-optimizer--name").expanded  # moved, not opened
        await pilot.press("f1")  # `?` types into a field; F1 works everywhere
        await pilot.pause()
        assert isinstance(app.screen, KeysDialog)
        text = str(app.screen.query_one("#keys-text").render())
        for key in ("ctrl+s", "ctrl+g", "ctrl+o", "ctrl+f", "ctrl+l", "ctrl+n", "down / up"):
            assert key in text, key
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)
