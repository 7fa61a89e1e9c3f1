"""The samples grid: which steps `--step` selects and how prompts line up across runs."""

from __future__ import annotations

import pytest

from tuitrain.samples.select import grid, parse_which, pick_steps
from tuitrain.store import Store


def _add(s: Store, run_id: str, step: int, outs: dict[str, str], ref: str | None = None) -> None:
    rows = [
        {"prompt_id": pid, "source": "val", "prompt": f"q {pid}", "output": o, "step": step,
         "reference": ref}
        for pid, o in outs.items()
    ]  # fmt: skip
    s.samples.add(run_id, rows)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path) as s:
        yield s


def test_which_steps(store: Store) -> None:
    a = store.create_run({}, {}, name="a")
    for step, loss in ((10, 2.0), (20, 1.5), (30, 1.7)):
        _add(store, a.id, step, {"v0": f"a{step}"})
        store.log_metrics(a.id, [(step, "val_loss", loss, 0.0)])
    assert pick_steps(store, a, "all") == [10, 20, 30]
    assert pick_steps(store, a, "last") == [30]
    assert pick_steps(store, a, "best") == [20]  # no summary yet: the lowest val_loss
    assert pick_steps(store, a, 20) == [20] and pick_steps(store, a, 25) == []
    store.update_run(a.id, summary={"best_step": 30})
    a = store.get_run(a.id)
    assert pick_steps(store, a, "best") == [30]  # the trainer's own best wins


def test_grid_lines_prompts_up_across_runs(store: Store) -> None:
    a = store.create_run({}, {}, name="a")
    b = store.create_run({}, {}, name="b")
    _add(store, a.id, 10, {"v0": "x", "v1": "y"}, ref="R")
    _add(store, b.id, 10, {"v1": "z"})
    g = grid(store, [a, b], 10)
    assert [c.label for c in g.columns] == ["a@10", "b@10"]
    assert [(r.prompt_id, [c.output if c else None for c in r.cells]) for r in g.rows] == [
        ("v0", ["x", None]),
        ("v1", ["y", "z"]),
    ]
    assert g.rows[0].reference == "R"
    g = grid(store, [a, b], 99)
    assert g.columns == [] and g.missing == ["a: no samples at 99", "b: no samples at 99"]


@pytest.mark.parametrize("bad", ["soon", "-3", ""])
def test_parse_which_names_the_choices(bad: str) -> None:
    with pytest.raises(ValueError, match="best, last or all"):
        parse_which(bad)
    assert parse_which("BEST") == "best" and parse_which("50") == 50
