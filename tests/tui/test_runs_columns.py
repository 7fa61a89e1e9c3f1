"""Every column true: the best column of a live run comes from its logged evals (its summary is
written at the end, and after a resume still holds the previous attempt's); names take the width
left and are cut in the middle; 60 columns keep status, progress and best; `ls` says the same."""

from __future__ import annotations

import json
import time

import pytest
from textual.widgets import DataTable

from tests.tui.conftest import aio, make_app, settle
from tuitrain.cli import main
from tuitrain.runs.columns import cut_middle
from tuitrain.store import Store


def _cells(app, rid: str) -> dict[str, str]:
    table = app.screen.query_one("#runs-table", DataTable)
    keys = [c.key.value for c in table.ordered_columns]
    return {k: str(v) for k, v in zip(keys, table.get_row(rid), strict=True)}


def _resumed(runs: dict) -> str:
    """The fixture's running run, resumed: its summary holds the first attempt's best (3.089)
    while an eval of this attempt reached 1.686; tagged."""
    rid = runs["running"]
    with Store("runs") as s:
        s.conn.execute(
            "UPDATE runs SET summary = ? WHERE id = ?",
            (json.dumps({"best_metric": "val_loss", "best_value": 3.089}), rid),
        )
        s.conn.commit()
        s.log_metrics(rid, [(170, "val_loss", 1.686, time.time())])
        cfg = s.get_run(rid).config
    cfg.setdefault("run", {})["tags"] = ["lr-sweep", "small"]
    with Store("runs") as s:
        s.conn.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(cfg), rid))
        s.conn.commit()
    return rid


@aio
async def test_best_of_a_live_run_is_its_best_logged_eval(runs):
    rid = _resumed(runs)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, rounds=1)
        cells = _cells(app, rid)
        assert cells["best"] == "1.686"  # not the stale 3.089, not '-'
        assert "lr-sweep small" in cells["name"]  # tags beside the name
        # An ended run keeps its summary's value (the final trainer's best).
        assert _cells(app, runs["completed"])["best"] == "1.427"


@pytest.mark.parametrize("width", [60, 80, 120])
@aio
async def test_narrow_lists_keep_status_progress_and_best(runs, width):
    app = make_app()
    async with app.run_test(size=(width, 20)) as pilot:
        await settle(pilot, rounds=1)
        table = app.screen.query_one("#runs-table", DataTable)
        keys = [c.key.value for c in table.ordered_columns]
        assert {"name", "status", "progress", "best"} <= set(keys)
        assert sum(c.get_render_width(table) for c in table.ordered_columns) <= width
        name = table.ordered_columns[keys.index("name")].width
        if width == 120:
            assert "started" in keys and name > 40  # the name takes what the others leave
        if width == 60:
            assert "started" not in keys and "elapsed" not in keys


@aio
async def test_long_names_are_cut_in_the_middle(runs):
    with Store("runs") as s:
        a = s.create_run({}, {"total_steps": 10}, name="walk-sweep-8f3a2c-trial-t001").id
        b = s.create_run({}, {"total_steps": 10}, name="walk-sweep-8f3a2c-trial-t002").id
    app = make_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot, rounds=1)
        na, nb = _cells(app, a)["name"], _cells(app, b)["name"]
        assert "…" in na and na.endswith("t001") and nb.endswith("t002")


def test_cut_middle_keeps_both_ends():
    assert cut_middle("walk-sweep-a1b2-t002", 12) == "walk-sw…t002"
    assert cut_middle("short", 12) == "short"
    assert len(cut_middle("x" * 50, 9)) == 9


def test_ls_json_has_tags_and_the_live_best(runs, capsys):
    rid = _resumed(runs)
    assert main(["ls", "--runs-dir", "runs", "--format", "json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[rid]["tags"] == ["lr-sweep", "small"] and rows[rid]["best"] == 1.686
    assert rows[runs["completed"]]["best"] == 1.4273
