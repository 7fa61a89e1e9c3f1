"""The editor's derived panel shows the SFT demo's data format, chat template, loss share and
truncation (a real Textual pilot on a copy of configs/sft-demo.yaml and its data)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from tests.tui.conftest import aio, make_app, settle

REPO = Path(__file__).resolve().parents[2]


def _sft_demo_here(tmp_path: Path) -> None:
    shutil.copy(REPO / "configs" / "sft-demo.yaml", tmp_path / "sft.yaml")
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "configs" / "data" / "stdlib-qa.jsonl", tmp_path / "data/stdlib-qa.jsonl")


def _panel(app) -> str:
    return str(app.screen.query_one("#derived", Static).render())


async def _data_shown(pilot: Pilot) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "chat template" not in _panel(pilot.app):
        await settle(pilot, rounds=1)


@aio
async def test_editor_shows_data_format_template_and_truncation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _sft_demo_here(tmp_path)
    app = make_app(start="edit", config="sft.yaml")
    async with app.run_test(size=(120, 40)) as pilot:
        await _data_shown(pilot)
        text = _panel(app)
        assert "data format      chat (set by data.format)" in text, text
        assert "chat template    chatml" in text
        assert "2,016 records -> 2,016 examples" in text
        assert "loss on answers only: 43% of tokens" in text
        assert "truncated 0 of 2,016 records" in text


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_editor_derived_panel_with_sft_data(snap_compare, tmp_path, monkeypatch, size):
    """The derived panel scrolls: at 80x24 its data lines (format, template, loss share,
    truncation) are scrolled into view, never cut off."""
    monkeypatch.chdir(tmp_path)
    _sft_demo_here(tmp_path)
    app = make_app(start="edit", config="sft.yaml", runs_dir=str(tmp_path / "runs"))

    async def run_before(pilot: Pilot) -> None:
        await _data_shown(pilot)
        pilot.app.screen.query_one("#derived-box").scroll_end(animate=False)
        for inp in pilot.app.screen.query(Input):
            inp.cursor_blink = False
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    assert app.return_code == 0


def test_chat_message_prompts_round_trip_through_the_editor_field():
    from tuitrain.config import parse
    from tuitrain.tui.widgets.fields import FieldSpec, from_text, to_text

    spec = FieldSpec("generation.prompts", "generation", "prompts", "list", False)
    value = [
        "What does os.sep mean?",
        [{"role": "system", "content": "Be, brief."}, {"role": "user", "content": "json.dumps?"}],
    ]
    assert from_text(spec, to_text(spec, value)) == value
    cfg = parse(
        {
            "model": {"tokenizer": "bytes"},
            "data": {"source": "python-stdlib"},
            "generation": {"prompts": value},
        }
    )
    assert cfg.generation.prompts[1][0].role == "system"
