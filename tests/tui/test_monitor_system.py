"""The monitor's system strip (GPU / CPU, step-time breakdown, MFU) and its system chart (g):
pilot tests and snapshots from sys/ and time/ metrics written to the fixture store as data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from textual.widgets import Static

from tests.tui.conftest import aio, make_app, settle
from tests.tui.fixture_db import NOW
from tests.tui.test_snapshots import SIZES, _settle_snap, snap
from tuitrain.store import Store
from tuitrain.tui.app import Settings
from tuitrain.tui.widgets.system import strip_lines

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)
STEPS = range(5, 161, 5)  # the fixture's running run logs steps 1..160


def add_system(runs_dir: Path, run_id: str, gpus: int, perf: bool = True) -> None:
    """Deterministic sys/ (and time/, mfu) values at every 5th step, as the trainer's sampler stores them."""
    rows = []
    for s in STEPS:
        t = NOW - 3600 + s
        for i in range(gpus):
            util = 60 + 35 * (1 - math.exp(-s / 40)) - 4 * i
            rows += [
                (s, f"sys/gpu{i}_util", round(util), t),
                (s, f"sys/gpu{i}_mem_used_gb", 40 + 0.25 * s + i, t),
                (s, f"sys/gpu{i}_mem_total_gb", 139.8, t),
                (s, f"sys/gpu{i}_power_w", 300 + 2 * s - 10 * i, t),
                (s, f"sys/gpu{i}_temp_c", 50 + s / 10, t),
                (s, f"sys/gpu{i}_sm_clock_mhz", 1980, t),
            ]
        rows += [
            (s, "sys/cpu_percent", 95 + 20 * math.sin(s / 15), t),
            (s, "sys/cpu_count", 16, t),
            (s, "sys/ram_used_gb", 20 + s / 40, t),
            (s, "sys/ram_total_gb", 125.7, t),
            (s, "sys/disk_free_gb", 512.3, t),
        ]
        if perf:
            rows += [
                (s, "time/data_s", 0.004, t),
                (s, "time/compute_s", 0.312, t),
                (s, "time/overhead_s", 0.003, t),
            ]
            if gpus:
                rows.append((s, "mfu", 0.412, t))
    with Store(runs_dir) as st:
        st.log_metrics(run_id, rows)


def _strip(app) -> str:
    w = app.screen.query_one("#sys-strip", Static)
    return str(w.render()) if w.display else ""


def _latest(gpus: int) -> dict[str, float]:
    out = {}
    for i in range(gpus):
        out |= {f"sys/gpu{i}_util": 100.0, f"sys/gpu{i}_mem_used_gb": 139.0,
                f"sys/gpu{i}_mem_total_gb": 139.8, f"sys/gpu{i}_power_w": 700.0}  # fmt: skip
    return out


def test_eight_busy_gpus_fit_one_line_at_120_and_a_summary_at_80():
    """Worst case widths (100%, 139G, 700W): per-GPU at 118 usable columns, a summary at 78."""
    wide = strip_lines(_latest(8), 118)
    assert len(wide) == 1 and len(wide[0]) <= 118 and wide[0].count("100/139/700") == 8
    narrow = strip_lines(_latest(8), 78)
    assert narrow == ["8 GPUs 100% 1112/1118G 5.6kW"]
    one = strip_lines(_latest(1), 78)
    assert one == ["gpu0 100% 139/140G 700W"]
    assert strip_lines({}, 118) == []


def test_other_nodes_follow_as_one_summary_each():
    """A multi-node run's worker machines (`sys/node{K}_...`, tuitrain.train.nodes) follow the
    main node's text; at 78 columns they shrink to a range of their GPUs' utilisation."""
    latest = _latest(8) | {
        k.replace("sys/", f"sys/node{n}_"): v - 10 * n
        for n in (1, 2)
        for k, v in _latest(8).items()
    }
    (wide,) = strip_lines(latest, 200)
    assert wide.startswith("GPU %/G/W 100/139/700 ") and wide.endswith(
        " │ node1 8 GPUs 90% 1032/1038G 5.5kW  node2 8 GPUs 80% 952/958G 5.4kW"
    )
    assert strip_lines(latest, 78) == ["8 GPUs 100% 1112/1118G 5.6kW │ +2 nodes gpu 80-90%"]
    cpu_only = {
        "sys/cpu_percent": 50.0,
        "sys/node1_cpu_percent": 40.0,
        "sys/node1_ram_used_gb": 2.0,
    }
    assert strip_lines(cpu_only, 118) == [
        "CPU 50%  RAM -/-G  disk -G free │ node1 cpu 40% ram 2.0/-G disk -G"
    ]


@aio
async def test_no_sys_metrics_no_strip(runs):
    """Runs from before the sampler (the fixture) keep the old header and layout."""
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert _strip(app) == ""
        assert app.screen.query_one("#monitor-bottom").styles.height.value == 7


@aio
async def test_cpu_strip_and_system_chart_toggle(runs):
    rid = runs["running"]
    add_system(Path("runs"), rid, gpus=0)
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = _strip(app)
        assert text.startswith("CPU ") and "RAM 24/126G" in text and "disk 512G" in text, text
        assert "step 0.319s data 1% other 1%" in text and "MFU" not in text  # no peak: no MFU
        # The strip's row comes from the events pane: three charts still fit at 80x24.
        assert not app.screen.single
        assert app.screen.query_one("#monitor-bottom").styles.height.value == 6
        chart = app.screen.query_one("#chart-grad")
        assert chart.title.startswith("grad norm")
        await pilot.press("g")
        await settle(pilot)
        assert chart.title.startswith("CPU/RAM % of host")
        labels = {ln.label: ln for ln in chart.lines}
        assert set(labels) == {"cpu", "ram"}
        assert labels["cpu"].xs == tuple(STEPS)
        assert labels["ram"].ys[-1] == pytest.approx(100 * (20 + 160 / 40) / 125.7, rel=0.01)
        await pilot.press("g")
        await settle(pilot)
        assert chart.title.startswith("grad norm") and chart.lines[0].label == ""


@aio
async def test_gpu_strip_wide_and_narrow_and_gpu_chart(runs):
    rid = runs["running"]
    add_system(Path("runs"), rid, gpus=8)
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        lines = _strip(app).splitlines()
        assert len(lines) == 2, lines  # tall: GPUs on one line, step times on the next
        assert lines[0].startswith("GPU %/G/W ") and len(lines[0].split()) == 2 + 8
        assert (
            lines[1]
            == "step 0.319s = data 4.0ms + compute 0.312s + other 3.0ms  MFU 41.2%  g: chart"
        )
        await pilot.press("g")
        await settle(pilot)
        chart = app.screen.query_one("#chart-grad")
        assert chart.title.startswith("GPU util/mem % (8 GPUs)")
        labels = {ln.label: ln for ln in chart.lines}
        assert set(labels) == {"util (mean)", "mem (mean)", "util (min)"}
        assert (
            labels["util (min)"].ys[-1] < labels["util (mean)"].ys[-1]
        )  # gpu7 runs 28 points lower
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        text = _strip(app)
        assert text.startswith("8 GPUs ") and "MFU 41%" in text and "\n" not in text, text


@aio
async def test_system_key_is_in_the_palette_listing(runs):
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        names = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert names.get("System") == "key: g"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("gpus", "chart"),
    [(2, False), (8, True), (0, True)],
    ids=["gpu-strip", "gpu-system-chart", "cpu-system-chart"],
)
def test_monitor_system(snap_compare, runs, size, gpus, chart):
    """Two GPUs in the strip with the step-time breakdown and MFU; eight GPUs with `g` swapping
    the grad-norm chart for GPU util / memory; a CPU-only run (CPU / RAM / disk in the strip,
    CPU and RAM % in the system chart)."""
    add_system(Path("runs"), runs["running"], gpus=gpus)
    app = make_app(start="watch", run=runs["running"])

    async def run_before(pilot) -> None:
        await _settle_snap(pilot)
        if chart:
            await pilot.press("g")
            await _settle_snap(pilot)

    assert snap(snap_compare, app, terminal_size=size, run_before=run_before)
