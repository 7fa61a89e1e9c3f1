"""`tuitrain ls` fits the terminal: 80 columns keep id, name, status, step and best; wide shows all."""

from __future__ import annotations

import pytest
from rich.cells import cell_len

from tuitrain.cli import main
from tuitrain.cli.table import Column, cut, render
from tuitrain.store import Store

ALL = ("ID", "NAME", "STATUS", "STEP", "BEST", "CREATED", "PID", "SWEEP", "TAGS")


@pytest.fixture
def runs(tmp_path):
    names = [
        "demo",
        "a-very-long-run-name-that-goes-on-and-on-for-ever",
        "名前の長いランです-日本語",
        "demo-sweep-t003",
    ]
    ids = []
    with Store(tmp_path) as s:
        for i, n in enumerate(names):
            r = s.create_run({}, {"total_steps": 1000}, name=n, sweep_id="sw-1" if i == 3 else None)
            s.mark_started(r.id, 4242)
            s.log_metrics(r.id, [(1000, "loss", 1.0, 0.0)])
            s.set_status(
                r.id, "early_stopped", summary={"best_metric": "val_loss", "best_value": 2.3456789}
            )
            ids.append(r.id)
    return tmp_path, ids


def _ls(runs_dir, monkeypatch, capsys, columns: str | None) -> list[str]:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert main(["ls", "--runs-dir", str(runs_dir)]) == 0
    return capsys.readouterr().out.splitlines()


def test_ls_fits_80_columns(runs, monkeypatch, capsys):
    runs_dir, ids = runs
    lines = _ls(runs_dir, monkeypatch, capsys, "80")
    assert max(cell_len(line) for line in lines) <= 80
    header = lines[0].split()
    assert header[:5] == ["ID", "NAME", "STATUS", "STEP", "BEST"]
    body = "\n".join(lines[1:])
    for i in ids:
        assert i in body  # ids are never cut: they are what other commands take
    assert "1000/1000" in body and "2.34568" in body and "early_stopped" in body
    assert "demo-sweep-t003" in body  # short names stay whole
    # Long ones are cut visibly, in the middle: both ends stay (trials differ at the end).
    assert "a-very-long" in body and "…" in body and "for-ever" in body


def test_ls_wide_shows_every_column_uncut(runs, monkeypatch, capsys):
    runs_dir, ids = runs
    lines = _ls(runs_dir, monkeypatch, capsys, "250")
    assert tuple(lines[0].split()) == ALL
    assert "a-very-long-run-name-that-goes-on-and-on-for-ever" in "\n".join(lines)
    assert "val_loss=2.34568" in lines[1] and "4242" in lines[1]
    # a pipe (no terminal, no $COLUMNS) gets whole rows too
    assert _ls(runs_dir, monkeypatch, capsys, None) == lines


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120])
def test_every_width_fits(runs, monkeypatch, capsys, width):
    lines = _ls(runs[0], monkeypatch, capsys, str(width))
    assert max(cell_len(line) for line in lines) <= width
    assert lines[0].startswith("ID")


def test_cut_counts_cells_not_characters():
    assert cut("日本語テキスト", 7) == "日本語…"
    assert cell_len(cut("日本語テキスト", 7)) <= 7
    assert cut("short", 10) == "short"
    cols = [Column("A", ["x" * 30], priority=-1, min_width=5), Column("B", ["y"], priority=0)]
    assert render(cols, 12) == ["A" + " " * 10 + "B", "x" * 8 + "…  y"]
