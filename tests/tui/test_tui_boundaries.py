"""The TUI process never loads the ML stack, even with every screen mounted; CLI wiring of the TUI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tuitrain.cli import build_parser, tui_cmds

ML = {"torch", "transformers", "accelerate", "peft"}

PROBE = r"""
import json, sys
sys.path.insert(0, {root!r})
from tests.tui.fixture_db import add_samples, build
import time
from textual.worker import WorkerState
from tuitrain.store import Store
from tuitrain.tui.app import TuitrainApp
from tuitrain.tui.screens.branch import open_branch
from tuitrain.tui.screens.doctor import DoctorScreen
from tuitrain.tui.screens.lrfind import LRFindScreen
from tuitrain.tui.screens.samples import SamplesScreen

ids = build({runs!r})
add_samples({runs!r}, ids)
# A branchable run: its config.yaml (the branch editor opens from it).
from pathlib import Path
from tuitrain.config import load_config, save_yaml
cfg = load_config(Path({root!r}) / "configs" / "demo.yaml")
rdir = Path({runs!r}) / ids["completed"]
rdir.mkdir(parents=True, exist_ok=True)
save_yaml(cfg.config, rdir / "config.yaml", header="probe")

# The runs list / monitor poll loops live for their screen's life: never waited on.
LOOPS = {{"monitor-poll", "runs-poll"}}

async def landed(pilot):
    # The screen on top has mounted, read once (a poll loop's first read), its deferred
    # derive ran and its one-shot workers have ended: whatever it imports is imported.
    app = pilot.app
    await pilot.pause()
    screen = app.screen
    deadline = time.monotonic() + 60

    def deferred():
        timer = getattr(screen, "_derive_timer", None)
        return timer is not None and timer._task is not None and not timer._task.done()

    while getattr(screen, "polls", 1) < 1 or deferred() or any(
        w.group not in LOOPS and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
        for w in app.workers
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"{{screen!r}}: not settled after 60 s")
        await pilot.pause(0.02)
    await pilot.pause()

async def tour(pilot):
    app = pilot.app
    await landed(pilot)
    app.open_monitor(ids["running"])
    await landed(pilot)
    app.open_compare([ids["completed"], ids["early"]])
    await landed(pilot)
    app.push_screen(SamplesScreen([ids["completed"], ids["early"]]))
    await landed(pilot)
    app.open_editor()
    await landed(pilot)
    app.push_screen(LRFindScreen(ids["completed"]))
    await landed(pilot)
    with Store({runs!r}) as store:
        run = store.get_run(ids["completed"])
    app.push_screen(DoctorScreen(run, []))
    await landed(pilot)
    open_branch(app, run)
    await landed(pilot)
    # the samples screen's `p` spawns through it: the module itself must stay torch-free
    import tuitrain.runs.ask  # noqa: F401
    app.exit([type(s).__name__ for s in app.screen_stack])

screens = TuitrainApp(runs_dir={runs!r}).run(headless=True, size=(80, 24), auto_pilot=tour)
mods = sorted({{m.split(".")[0] for m in sys.modules}})
print(json.dumps({{"screens": screens, "modules": mods}}))
"""


def test_mounting_every_screen_loads_no_ml_stack(tmp_path: Path):
    root = str(Path(__file__).resolve().parents[2])
    code = PROBE.format(root=root, runs=str(tmp_path / "runs"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["screens"][-8:] == [
        "RunsScreen",
        "MonitorScreen",
        "CompareScreen",
        "SamplesScreen",
        "EditorScreen",
        "LRFindScreen",
        "DoctorScreen",
        "BranchEditorScreen",
    ]
    assert "textual" in got["modules"] and "plotext" in got["modules"]
    assert not ML & set(got["modules"])


def test_cli_routes_tui_commands():
    p = build_parser()
    args = p.parse_args(
        [
            "--runs-dir",
            "somewhere",
            "edit",
            "my.yaml",
            "--env",
            "prod",
            "--set",
            "optimizer.lr=5e-5",
        ]
    )
    assert (args.handler, args.config, args.env, args.sets, args.runs_dir) == (
        tui_cmds.cmd_edit,
        "my.yaml",
        "prod",
        ["optimizer.lr=5e-5"],
        "somewhere",
    )
    args = p.parse_args(["edit"])
    assert args.config is None  # the bundled demo config
    args = p.parse_args(["watch", "run-1"])
    assert (args.handler, args.run) == (tui_cmds.cmd_watch, "run-1")


def test_watch_unknown_run_is_a_clear_error(tmp_path: Path, capsys):
    from tuitrain.cli import exits, main

    assert main(["--runs-dir", str(tmp_path), "watch", "nope"]) == exits.NOT_FOUND
    err = capsys.readouterr().err
    assert "nope" in err and "--runs-dir" in err and "Traceback" not in err
