"""Pilot tests of the compare screen: interventions beside the config diff, marks on the curves,
unique names in the legend and the summary columns."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from tests.tui.conftest import aio, make_app, settle
from tests.tui.fixture_db import add_run
from tuitrain.store import Store
from tuitrain.tui.app import Settings

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)


def _rows(table: DataTable) -> list[list[str]]:
    return [
        [str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)
    ]


@aio
async def test_compare_lists_interventions_marks_them_and_uses_unique_names(runs):
    with Store("runs") as s:
        a = runs["completed"]
        s.add_event(
            a, "lr", "set_lr by tui: lr 0.000512 -> 0.0002 from step 121 (multiplier 0.39)", 120
        )
        s.add_event(a, "lr", "plateau: lr cut to 0.0001 (val_loss stalled)", 300, {"lr": 1e-4})
        twin = add_run(s, "baseline", 1e-3, 400, 100)
        s.set_status(twin, "stopped", "SIGTERM")
        conn = s.conn
        with conn:  # a database from before names were made unique: two runs named baseline
            conn.execute("UPDATE runs SET name = 'baseline' WHERE id = ?", (twin,))
    ids = [a, runs["early"], twin]
    app = make_app(start="compare", compare=ids, settings=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        legend = str(screen.query_one("#compare-legend", Static).render())
        assert legend.count("baseline") == 2 and f"baseline·{twin[-4:]}" in legend
        summary = screen.query_one("#summary-table", DataTable)
        labels = [str(c.label.plain) for c in summary.columns.values()]
        assert len(set(labels[1:])) == 3
        rows = _rows(screen.query_one("#interventions-table", DataTable))
        assert [f"baseline·{a[-4:]}", "120", "LR change", "0.000512 -> 0.0002"] in rows
        plateau = [r for r in rows if r[2] == "plateau cut"]
        assert plateau and plateau[0][1] == "300" and plateau[0][3].endswith("-> 1.00e-04")
        assert plateau[0][3].split(" -> ")[0] != "-"  # the old LR comes from the lr series
        assert ["low-lr", "250", "stop", "val_loss did not improve for 3 evals"] in rows
        assert any(r[0] == f"baseline·{twin[-4:]}" and r[2] == "stop" for r in rows)
        chart = screen.query_one("#compare-chart")
        assert {step for step, _ in chart.marks} >= {120, 300, 250}
        await pilot.press("3")
        await pilot.pause()
        assert screen.query_one("#interventions-table").display


@aio
async def test_the_samples_scores_chart_like_any_metric(runs):
    """The generation samples' per-eval means (samples/*) are among compare's metrics (m)."""
    a, b = runs["completed"], runs["early"]
    with Store("runs") as s:
        for rid, sims in ((a, (0.2, 0.4, 0.5)), (b, (0.3, 0.6, 0.9))):
            rows = [(50 * (i + 1), "samples/similarity", v, 0.0) for i, v in enumerate(sims)]
            rows += [(50 * (i + 1), "samples/repetition", 0.1, 0.0) for i in range(3)]
            s.log_metrics(rid, rows)
    app = make_app(start="compare", compare=[a, b], settings=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert {"samples/similarity", "samples/repetition"} <= set(screen.metrics)
        while screen.metric != "samples/similarity":
            await pilot.press("m")
        await settle(pilot)
        chart = screen.query_one("#compare-chart")
        assert "samples/similarity" in str(chart.title)
        assert sorted(y for line in chart.lines for y in line.ys if line.label) == [
            0.2, 0.3, 0.4, 0.5, 0.6, 0.9
        ]  # fmt: skip
