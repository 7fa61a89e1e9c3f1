"""Tests that the monitor's charts hold still while a run logs (issue 27): the x domain grows in
1-2-5 steps, finished columns keep their values however the store re-cuts its buckets, the y
range moves only with hysteresis, a redraw repaints only the cells that changed, and every new
point is still drawn. Also: under NO_COLOR each series has its own character and a legend."""

from __future__ import annotations

import math
import time

from rich.text import Text
from textual.content import Content

from tests.tui.conftest import aio, make_app, settle
from tuitrain.store import Store
from tuitrain.tui.app import Settings
from tuitrain.tui.widgets.chart import Line
from tuitrain.tui.widgets.partial import changed_regions, lines_of
from tuitrain.tui.widgets.stable import YRange, columns, nice_ceil, x_domain

FAST = Settings(poll_s=0.2, list_poll_s=0.3, chart_cpu_budget=1.0)


def test_nice_ceil_is_the_next_1_2_5_number():
    assert [nice_ceil(v) for v in (1, 3, 7, 10, 11, 180, 200, 201, 499, 501)] == [
        1,
        5,
        10,
        10,
        20,
        200,
        200,
        500,
        500,
        1000,
    ]


def test_x_domain_holds_still_while_the_run_grows_then_steps_to_the_next_round_range():
    seen = {x_domain(1, hi, 80)[:2] for hi in range(201, 501)}
    assert seen == {(0.0, 500.0)}
    assert x_domain(1, 501, 80)[:2] == (0.0, 1000.0)
    lo, hi, ticks = x_domain(1, 700, 80)
    assert ticks[0] == 0 and ticks[-1] == 1000 and all(t == round(t) for t in ticks)
    assert 3 <= len(ticks) <= 6
    # a narrow chart gets fewer labels; a range far from 0 keeps its start
    assert len(x_domain(1, 70000, 30)[2]) < len(x_domain(1, 70000, 120)[2])
    lo, hi, _ = x_domain(9000, 9500, 80)
    assert lo <= 9000 and hi >= 9500 and hi - lo <= 1000


def _read(store: Store, rid: str, name: str, buckets: int) -> Line:
    pts = store.series(rid, name, buckets)
    return Line(
        "",
        tuple(p[0] for p in pts),
        tuple(p[3] for p in pts),
        lo=tuple(p[1] for p in pts),
        hi=tuple(p[2] for p in pts),
    )


def test_finished_columns_keep_their_values_while_the_store_recuts_its_buckets(tmp_path):
    """The store's buckets move as the run grows; the chart's finished columns must not."""
    with Store(tmp_path / "runs") as s:
        rid = s.create_run({}, {}, name="grow").id
        cache: dict = {}
        key = ("domain 0..1000",)
        seen: dict[int, tuple] = {}
        changed_reads = 0
        prev_xs, done = None, 0
        for top in range(300, 1001, 37):
            rows = [
                (st, "loss", 2 + math.sin(st / 9) + 0.001 * st, 0.0)
                for st in range(done + 1, top + 1)
            ]
            s.log_metrics(rid, rows)
            done = top
            line = _read(s, rid, "loss", 160)
            xs, ys, los, his = columns(line, 0.0, 1000.0, 160, key, cache)
            assert xs[-1] == top  # the newest point is drawn
            if prev_xs is not None and line.xs[:50] != prev_xs[:50]:
                changed_reads += 1  # the store re-cut its buckets for this read
            prev_xs = line.xs
            for i, x in enumerate(xs[:-1]):  # every finished column
                k = int(x / (1000 / 160))
                got = (x, ys[i], los[i], his[i])
                assert seen.setdefault(k, got) == got, f"column {k} moved at step {top}"
        assert changed_reads > 0  # the store's buckets did move: the test means something


def test_a_rewritten_run_starts_the_columns_over():
    cache: dict = {}
    key = ("k",)
    columns(Line("", (1.0, 50.0, 90.0), (3.0, 2.0, 1.0)), 0, 100, 10, key, cache)
    xs, ys, _, _ = columns(Line("", (1.0, 50.0), (3.0, 5.0)), 0, 100, 10, key, cache)
    assert xs == (1.0, 50.0) and ys == (3.0, 5.0)  # the resumed run's values, not the old ones


def test_y_range_expands_with_room_and_shrinks_only_when_the_data_left_most_of_it():
    r = YRange()
    lo, hi = r.update(2.0, 3.0)
    assert lo < 2.0 and hi > 3.0
    assert r.update(2.1, 2.9) == (lo, hi)  # inside: unchanged
    assert r.update(lo + 0.01, hi - 0.01) == (lo, hi)
    lo2, hi2 = r.update(1.9, 3.0)  # a new low: expands downwards with room to spare
    assert lo2 < 1.9 - 0.1 and hi2 == hi
    assert r.update(1.85, 3.0) == (lo2, hi2)  # the next lows fit without moving
    lo3, hi3 = r.update(2.0, 2.2)  # the data now spans a fraction of the axis: cut back
    assert hi3 - lo3 < 0.5 and lo3 < 2.0 < 2.2 < hi3


def test_changed_regions_cover_only_the_cells_that_differ():
    old = lines_of(Text("abcdefghij\nklmnopqrst"))
    new = lines_of(Text("abcdefghiX\nklmnopqrst"))
    assert [tuple(r) for r in changed_regions(old, new, 10)] == [(9, 0, 1, 1)]
    styled = Text("abcdefghij\nklmnopqrst")
    styled.stylize("red", 13, 14)  # one cell's style only
    assert [tuple(r) for r in changed_regions(old, lines_of(styled), 10)] == [(2, 1, 1, 1)]
    far = lines_of(Content("Xbcdefghij\nklmnopqrsX"))
    assert len(changed_regions(lines_of(Content("abcdefghij\nklmnopqrst")), far, 10)) == 2


def _cells_changed(old: Text, new: Text) -> int:
    return sum(r.width for r in changed_regions(lines_of(old), lines_of(new), 10_000))


def _picture(chart) -> Text:
    return chart._cache[1]


@aio
async def test_a_new_point_repaints_a_few_cells_at_the_right_edge_and_is_drawn(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with Store("runs") as s:
        rid = s.create_run({}, {"total_steps": 5000}, name="live", status="running").id
        s.log_metrics(
            rid,
            [
                (st, m, v, 0.0)
                for st in range(1, 601)
                for m, v in (("loss", 2 + math.exp(-st / 300)), ("lr", 1e-3), ("grad_norm", 1.0))
            ],
        )
    app = make_app(start="watch", run=rid, settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        charts = [app.screen.query_one(c) for c in ("#chart-loss", "#chart-lr", "#chart-grad")]
        for step in range(601, 621, 5):
            before = [_picture(c) for c in charts]
            with Store("runs") as s:
                s.log_metrics(
                    rid,
                    [
                        (st, m, v, 0.0)
                        for st in range(step, step + 5)
                        for m, v in (
                            ("loss", 2 + math.exp(-st / 300)),
                            ("lr", 1e-3),
                            ("grad_norm", 1.0),
                        )
                    ],
                )
            deadline = time.monotonic() + 20
            while charts[0].lines[0].xs[-1] != step + 4:
                assert time.monotonic() < deadline, "the new point did not reach the chart"
                await settle(pilot, rounds=1)
            await settle(pilot, rounds=1)
            for chart, old in zip(charts, before, strict=True):
                new = _picture(chart)
                area = chart.size.width * chart.size.height
                assert _cells_changed(old, new) <= area // 10, (chart.id, str(old), str(new))
            # the newest point is among the points drawn
            assert charts[0]._binned(charts[0].lines)[0].xs[-1] == step + 4


@aio
async def test_no_color_train_and_val_have_their_own_marks_and_a_legend(runs, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = _picture(app.screen.query_one("#chart-loss")).plain
        assert "train" in text and "val" in text
        assert "•" in text  # the val line's character, beside "val" in the legend too
        legend = next(line for line in text.splitlines()[1:] if "val" in line)  # not the title
        assert "• val" in legend, legend
    monkeypatch.delenv("NO_COLOR")
    app = make_app(start="watch", run=runs["running"], settings=FAST)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "•" not in _picture(app.screen.query_one("#chart-loss")).plain
