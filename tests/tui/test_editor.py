"""Pilot tests of the config editor: generated fields, LR parsing, errors, derived values, save/load."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static, Switch

from tests.tui.conftest import aio, make_app, settle, timers_fired
from tuitrain.config import load_config
from tuitrain.config.schema import TrainConfig
from tuitrain.tui.widgets.fields import FieldSpec, from_text, sections, to_text

EDITOR_YAML = Path(__file__).parent / "data" / "editor.yaml"  # pinned: the demo may be retuned


def _leaves(model, prefix="") -> set[str]:
    out = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            out |= _leaves(ann, f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


def test_every_config_field_has_a_form_field_with_help():
    specs = [s for group in sections().values() for s in group]
    assert {s.path for s in specs} == _leaves(TrainConfig)
    assert all(s.help for s in specs)
    assert "model.arch" in sections()


@pytest.mark.parametrize("text", ["5e-5", "5E-5", "5.0e-05", "0.00005", " 5e-5 "])
def test_lr_text_forms_parse_to_the_same_float(text):
    spec = FieldSpec("optimizer.lr", "optimizer", "lr", "float", False)
    assert from_text(spec, text) == 5e-5
    assert from_text(spec, to_text(spec, 5e-5)) == 5e-5


def test_from_text_keeps_bad_input_and_maps_empty_optional_to_none():
    lr = FieldSpec("optimizer.lr", "optimizer", "lr", "float", False)
    steps = FieldSpec("training.max_steps", "training", "max_steps", "int", True)
    tags = FieldSpec("run.tags", "run", "tags", "list", False)
    assert from_text(lr, "fast") == "fast"
    assert from_text(steps, "") is None
    assert from_text(steps, "1e3") == 1000
    assert from_text(tags, "a, b,,c") == ["a", "b", "c"]


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copy(EDITOR_YAML, "demo.yaml")
    return Path("demo.yaml")


def _derived(app) -> str:
    return str(app.screen.query_one("#derived", Static).render())


async def _set(pilot, path: str, value) -> None:
    app = pilot.app
    await app.screen.jump_to(path)
    await pilot.pause()
    widget = app.screen.query_one("#f-" + path.replace(".", "--"))
    before = app.screen.generation
    widget.value = value
    # Wait on the condition, not a fixed time: the edit was validated (generation bumped) and
    # the debounced derived-values worker has reported (the panel is no longer pending).
    panel = app.screen.query_one("#derived")
    deadline = time.monotonic() + 20.0
    while app.screen.generation <= before or panel.has_class("-pending"):
        if time.monotonic() > deadline:
            raise AssertionError(f"derived values not updated within 20 s after {path}={value!r}")
        await timers_fired(pilot)  # the debounce's derive starts now
        await pilot.pause(0.02)
    await settle(pilot, rounds=1)


@aio
async def test_editing_updates_derived_values_and_errors(demo):
    app = make_app(start="edit", config=str(demo))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        assert "effective batch  16" in _derived(app)
        assert "scaled LR        1.00e-03" in _derived(app)

        await _set(pilot, "batch.grad_accum", "4")
        assert "effective batch  64" in _derived(app)

        await _set(pilot, "optimizer.lr", "5E-5")
        assert app.screen.doc.data["optimizer"]["lr"] == 5e-5
        assert "scaled LR        5.00e-05" in _derived(app)

        await _set(pilot, "optimizer.lr", "fast")
        err = app.screen.query_one("#err-f-optimizer--lr", Static)
        assert err.display and "valid number" in str(err.render())
        assert "1 problem" in str(app.screen.query_one("#editor-status", Static).render())
        assert app.screen.query_one("#row-f-optimizer--lr").has_class("-invalid")

        await _set(pilot, "optimizer.lr", "0.0003")
        assert not app.screen.query_one("#err-f-optimizer--lr", Static).display
        assert "valid" in str(app.screen.query_one("#editor-status", Static).render())

        # A cross-field rule (warmup as long as training) is reported on its field.
        await _set(pilot, "scheduler.warmup_ratio", "1.0")
        err = app.screen.query_one("#err-f-scheduler--warmup_steps", Static)
        assert err.display and "as long as training" in str(err.render())


@aio
async def test_widget_kinds_follow_the_field_types(demo):
    app = make_app(start="edit", config=str(demo))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        kinds = {
            "optimizer.name": Select,
            "run.deterministic": Switch,
            "optimizer.lr": Input,
            "model.arch.hidden_size": Input,
            "run.tags": Input,
        }
        for path, kind in kinds.items():
            await app.screen.jump_to(path)  # pages are built on first visit
            await pilot.pause()
            assert isinstance(app.focused, kind), path
            assert app.focused.id == "f-" + path.replace(".", "--")


@aio
async def test_save_writes_yaml_that_loads_back(demo):
    app = make_app(start="edit", config=str(demo))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await _set(pilot, "optimizer.lr", "5e-5")
        await pilot.press("ctrl+s")
        await pilot.pause()
        prompt = app.screen.query_one("#prompt-input", Input)
        prompt.value = "saved.yaml"
        await pilot.press("enter")
        await pilot.pause()
    cfg = load_config("saved.yaml").config
    assert cfg.optimizer.lr == 5e-5
    assert cfg.model.arch.hidden_size == 128


@aio
async def test_env_overlay_is_offered_and_applied(demo):
    text = demo.read_text() + "envs:\n  fast:\n    optimizer:\n      lr: 3e-4\n"
    demo.write_text(text)
    app = make_app(start="edit", config=str(demo))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        select = app.screen.query_one("#env-select", Select)
        assert select.display
        select.value = "fast"
        await settle(pilot, rounds=1)
        assert app.screen.doc.env == "fast"
        await app.screen.jump_to("optimizer.lr")
        await pilot.pause()
        assert app.screen.query_one("#f-optimizer--lr", Input).value == "0.0003"


@aio
async def test_broken_file_opens_with_the_error_marked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(EDITOR_YAML.read_text().replace("lr: 1e-3", "lr: fast"))
    app = make_app(start="edit", config="bad.yaml")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        assert "1 problem" in str(app.screen.query_one("#editor-status", Static).render())
        await app.screen.jump_to("optimizer.lr")
        await pilot.pause()
        assert app.screen.query_one("#err-f-optimizer--lr", Static).display
        assert app.screen.query_one("#f-optimizer--lr", Input).value == "fast"


@pytest.mark.parametrize(
    "value", [["def main(", "import "], ["a, b", "c"], ["q_proj", "v_proj"], [], ['"quoted"']]
)
def test_list_fields_round_trip_exactly(value):
    spec = FieldSpec("generation.prompts", "generation", "prompts", "list", False)
    assert from_text(spec, to_text(spec, value)) == value


def test_every_demo_value_round_trips_through_its_widget_text():
    from tuitrain.tui.configdoc import load_document
    from tuitrain.tui.widgets.fields import get_path

    data = load_document(None).data
    for spec in (s for group in sections().values() for s in group):
        if spec.kind in ("bool", "choice"):
            continue
        value = get_path(data, spec.path)
        assert from_text(spec, to_text(spec, value)) == value, spec.path


@aio
async def test_showing_every_page_leaves_the_config_unchanged(demo):
    from tuitrain.tui.configdoc import load_document

    app = make_app(start="edit", config=str(demo))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for section in sections():
            await app.screen.show_section(section)
            await pilot.pause()
        assert app.screen.doc.data == load_document(demo).data


@aio
async def test_open_loads_another_file_and_rejects_a_missing_one(demo):
    other = Path("other.yaml")
    other.write_text(demo.read_text().replace("lr: 1e-3", "lr: 2e-4"))
    app = make_app(start="edit", config=str(demo))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        await pilot.press("ctrl+o")
        await pilot.pause()
        prompt = app.screen.query_one("#prompt-input", Input)
        prompt.value = "missing.yaml"
        await pilot.press("enter")
        await pilot.pause()
        assert "no such file" in str(app.screen.query_one("#prompt-error", Static).render())
        app.screen.query_one("#prompt-input", Input).value = str(other)
        await pilot.press("enter")
        await settle(pilot, rounds=1)
        assert app.screen.doc.source == str(other)
        await app.screen.jump_to("optimizer.lr")
        await pilot.pause()
        assert app.screen.query_one("#f-optimizer--lr", Input).value == "0.0002"
        assert "scaled LR        2.00e-04" in _derived(app)
