"""Boundary tests: the TUI, CLI, store, config, launcher and sweeps never load the ML stack, and the
training side never loads Textual (each import runs in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# HF datasets too: only the training process loads data through it.
ML = ("torch", "transformers", "accelerate", "peft", "datasets")
TUI = ("textual", "textual_plotext", "plotext")
SFT_DEMO = Path(__file__).resolve().parents[1] / "configs" / "sft-demo.yaml"


def loaded_after(code: str) -> set[str]:
    probe = (
        code
        + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "module",
    [
        "tuitrain",
        "tuitrain.cli",
        "tuitrain.config",
        "tuitrain.store",
        "tuitrain.runs.launch",
        "tuitrain.sweep",
        "tuitrain.steering",
        "tuitrain.data.sources",
        "tuitrain.data.records",
        "tuitrain.data.templates",
        "tuitrain.data.chat",
        "tuitrain.data.estimate",
        "tuitrain.data.summary",
        "tuitrain.tui.app",
        "tuitrain.doctor",
        "tuitrain.telemetry.sysinfo",
        "tuitrain.telemetry.perf",
    ],
)
def test_no_ml_stack_outside_training(module):
    assert not loaded_after(f"import {module}") & set(ML)


def test_editor_data_summary_of_the_sft_demo_stays_light():
    # Reading the records, rendering the chat template and counting truncation: no ML stack.
    code = (
        "from tuitrain.config import load_config\nfrom tuitrain.data.estimate import data_summary\n"
        f"s = data_summary(load_config({str(SFT_DEMO)!r}).config)\nassert s.format == 'chat'"
    )
    assert not loaded_after(code) & set(ML)


def test_cli_parser_and_app_screens_stay_light():
    code = "from tuitrain.cli import build_parser; build_parser()\nimport tuitrain.tui.screens"
    assert not loaded_after(code) & set(ML)


@pytest.mark.parametrize(
    "module",
    [
        "tuitrain.train.loop",
        "tuitrain.client.api",
        "tuitrain.integrations.hf",
        "tuitrain.integrations.accelerate",
        "tuitrain.store",
        "tuitrain.doctor.watch",
        "tuitrain.telemetry.sysinfo",
    ],
)
def test_training_side_never_loads_textual(module):
    assert not loaded_after(f"import {module}") & set(TUI)


# What bare `tuitrain` must not load before the runs list shows its rows (cold start, issue
# 16): the config schema (pydantic), YAML, the charts (plotext) and sqlite-utils come on first
# use of the screens and commands that need them.
RUNS_LIST_LATER = (
    "pydantic",
    "pydantic_core",
    "ruamel",
    "plotext",
    "textual_plotext",
    "sqlite_utils",
)

OPEN_RUNS_LIST = r"""
import sys
import textual.app
import tuitrain.cli

def opened(pilot):
    async def wait():
        while not (t := pilot.app.screen.query("#runs-table")) or t.first().row_count < 1:
            await pilot.pause(0.01)
        pilot.app.exit()
    return wait()

real = textual.app.App.run
textual.app.App.run = lambda self, **kw: real(self, headless=True, size=(80, 24), auto_pilot=opened)
assert tuitrain.cli.main(["--runs-dir", sys.argv[1]]) == 0
"""


def test_runs_list_opens_without_the_config_schema_or_charts(tmp_path):
    """Bare `tuitrain` (tuitrain.cli.main, no subcommand) up to the runs list's first rows."""
    from tuitrain.store import Store

    with Store(tmp_path) as s:
        s.create_run({"run": {"name": "demo"}}, {"total_steps": 10}, name="demo")
    code = OPEN_RUNS_LIST.replace("sys.argv[1]", repr(str(tmp_path)))
    loaded = loaded_after(code)
    assert "textual" in loaded and "tuitrain" in loaded  # the probe did open the app
    assert not loaded & set(RUNS_LIST_LATER), sorted(loaded & set(RUNS_LIST_LATER))
