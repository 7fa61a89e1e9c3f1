"""The editor's derived panel shows the SFT demo's data format, chat template and truncation
share (a real Textual pilot on a copy of configs/sft-demo.yaml and its data)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from textual.widgets import Static

from tests.tui.conftest import aio, make_app, settle

REPO = Path(__file__).resolve().parents[2]


@aio
async def test_editor_shows_data_format_template_and_truncation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "configs" / "sft-demo.yaml", "sft.yaml")
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "configs" / "data" / "stdlib-qa.jsonl", "data/stdlib-qa.jsonl")
    app = make_app(start="edit", config="sft.yaml")
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            await settle(pilot, rounds=1)
            text = str(app.screen.query_one("#derived", Static).render())
            if "chat template" in text:
                break
        assert "data format      chat (set by data.format)" in text, text
        assert "chat template    chatml" in text
        assert "truncation       0% of examples truncated (0 of 2016)" in text


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
