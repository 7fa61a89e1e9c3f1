"""The samples table: rows in one transaction, read back per run and step, deleted with the run."""

from __future__ import annotations

import pytest

from tuitrain.store import InvalidValue, Store


def _row(pid: str, out: str, **kw) -> dict:
    return {"prompt_id": pid, "source": "val", "prompt": f"q {pid}", "output": out, **kw}


def test_samples_round_trip_in_run_and_step_order(tmp_path) -> None:
    with Store(tmp_path) as s:
        a = s.create_run({}, {}, name="a").id
        b = s.create_run({}, {}, name="b").id
        s.samples.add(b, [_row("v0", "B50", step=50)])
        s.samples.add(
            a,
            [
                _row(
                    "v0",
                    "hello",
                    step=100,
                    reference="hello",
                    messages=[{"role": "user", "content": "q v0"}],
                    settings={"do_sample": False, "max_new_tokens": 8},
                    tokens=2,
                    seconds=0.5,
                    exact_match=1.0,
                    similarity=100.0,
                    repetition=0.0,
                ),
                _row("p0", "x", step=100, source="prompt"),
            ],
        )
        s.samples.add(a, [_row("v0", "hel", step=50)])
        got = s.samples.for_runs([b, a])
        assert [(g.run_id, g.step, g.prompt_id) for g in got] == [
            (b, 50, "v0"),
            (a, 50, "v0"),
            (a, 100, "v0"),
            (a, 100, "p0"),
        ]
        full = got[2]
        assert full.reference == "hello" and full.exact_match == 1.0
        assert full.messages == [{"role": "user", "content": "q v0"}]
        assert full.settings == {"do_sample": False, "max_new_tokens": 8}
        assert got[3].reference is None and got[3].settings == {}
        assert s.samples.steps(a) == [50, 100]
        assert [g.step for g in s.samples.for_runs([a], steps=[100])] == [100, 100]
        assert s.samples.for_runs([a], steps=[]) == []
        newest = s.samples.newest_id()
        assert [g.id for g in s.samples.for_runs([a, b], after_id=newest - 1)] == [newest]
        s.delete_run(a)
        assert s.samples.for_runs([a]) == [] and len(s.samples.for_runs([b])) == 1


def test_a_bad_sample_names_the_field_and_writes_nothing(tmp_path) -> None:
    with Store(tmp_path) as s:
        a = s.create_run({}, {}, name="a").id
        with pytest.raises(InvalidValue, match="prompt"):
            s.samples.add(a, [_row("v0", "ok", step=1), {"prompt_id": "v1", "source": "val"}])
        with pytest.raises(InvalidValue, match="source"):
            s.samples.add(a, [_row("v0", "ok", step=1, source="guess")])
        assert s.samples.for_runs([a]) == []
