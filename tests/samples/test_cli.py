"""`tuitrain samples` over store rows written directly: the JSON round-trips to the stored rows,
the Markdown table keeps one cell per column whatever the answers hold, the plain table wraps to
80 columns without losing a word, --step defaults and errors give their exit codes."""

from __future__ import annotations

import json
import re

import pytest

from tuitrain.cli import main
from tuitrain.samples import scores
from tuitrain.store import Store

LONG = (
    "Serialize obj to a JSON formatted str using this conversion table; if skipkeys is true then "
    "dict keys that are not of a basic type are skipped instead of raising a TypeError."
)


def _rows(step: int, answers: dict[str, str]) -> list[dict]:
    refs = {"v0": "Serialize obj to a JSON formatted str.", "v1": "Return x | y."}
    out = []
    for pid, text in answers.items():
        ref = refs.get(pid)
        out.append(
            {
                "prompt_id": pid,
                "source": "val" if pid.startswith("v") else "prompt",
                "prompt": {"p0": "What does json.dumps do?", "v0": "Explain json.dumps.",
                           "v1": "What does operator.or_ do?"}[pid],
                "messages": [{"role": "user", "content": "q"}] if pid == "p0" else None,
                "reference": ref,
                "output": text,
                "step": step,
                "tokens": 12,
                "seconds": 0.25,
                "settings": {"mode": "greedy", "max_new_tokens": 64},
                **scores.score(text, ref),
            }
        )  # fmt: skip
    return out


@pytest.fixture
def runs_dir(tmp_path):
    with Store(tmp_path) as s:
        a = s.create_run({}, {}, name="alpha", status="completed")
        b = s.create_run({}, {}, name="beta", status="completed")
        s.samples.add(
            a.id, _rows(50, {"p0": "Rend|> Rend|> Rend|>", "v0": "ee", "v1": "a a a a a"})
        )
        s.samples.add(a.id, _rows(100, {"p0": LONG, "v0": "serialize obj to a JSON  formatted str.",
                                        "v1": "Return x |\ny."}))  # fmt: skip
        s.samples.add(
            b.id, _rows(100, {"p0": "Return turn a a a athe", "v0": "Serialize", "v1": ""})
        )
        s.update_run(a.id, summary={"best_step": 100})
    return tmp_path


def _cli(capsys, runs_dir, *argv) -> tuple[int, str, str]:
    code = main(["--runs-dir", str(runs_dir), "samples", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_round_trips_to_the_stored_rows(capsys, runs_dir):
    code, out, _ = _cli(capsys, runs_dir, "alpha", "beta", "--step", "all", "--format", "json")
    assert code == 0
    got = json.loads(out)
    with Store(runs_dir) as s:
        names = {r.id: r.name for r in s.list_runs()}
        ids = [r.id for r in sorted(s.list_runs(), key=lambda r: r.name)]
        stored = s.samples.for_runs(ids)
    assert len(got) == len(stored) == 9
    for obj, row in zip(got, stored, strict=True):
        assert obj["run"] == row.run_id and obj["run_name"] == names[row.run_id]
        for key in ("step", "prompt_id", "source", "prompt", "messages", "reference", "output",
                    "exact_match", "similarity", "repetition", "tokens", "seconds", "settings",
                    "id", "created"):  # fmt: skip
            assert obj[key] == getattr(row, key), key
    first = got[0]
    assert first["reference"] is None and first["exact_match"] is None  # p0: no reference
    assert got[1]["reference"] == "Serialize obj to a JSON formatted str."
    # the default for several runs is each one's best step: alpha 100 (its best_step), beta 100
    code, out, _ = _cli(capsys, runs_dir, "alpha", "beta", "--format", "json")
    assert code == 0 and {(o["run_name"], o["step"]) for o in json.loads(out)} == {
        ("alpha", 100),
        ("beta", 100),
    }


def test_one_run_shows_all_its_steps_by_default(capsys, runs_dir):
    code, out, _ = _cli(capsys, runs_dir, "alpha", "--format", "json")
    assert code == 0 and sorted({o["step"] for o in json.loads(out)}) == [50, 100]


def _cells(line: str) -> list[str]:
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_markdown_keeps_one_cell_per_column(capsys, runs_dir):
    code, out, _ = _cli(capsys, runs_dir, "alpha", "beta", "--step", "100", "--format", "md")
    assert code == 0
    lines = out.strip().splitlines()
    assert _cells(lines[0]) == [" prompt ", " reference ", " alpha@100 ", " beta@100 "]
    assert all(len(_cells(ln)) == 4 for ln in lines), out
    v1 = next(ln for ln in lines if "`v1`" in ln)
    assert "Return x \\| y." in v1 and "Return x \\|<br>y." in v1  # pipe and newline escaped
    assert "*(empty)*" in v1  # beta's empty answer is visible
    assert "exact 1 · sim 1.00" in next(ln for ln in lines if "`v0`" in ln)
    assert lines[-1].startswith("| **mean**")


def test_table_wraps_to_80_columns_and_loses_no_word(capsys, runs_dir, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = _cli(capsys, runs_dir, "alpha", "beta", "--step", "all")
    assert code == 0
    lines = out.splitlines()
    assert max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    assert set(LONG.split()) <= set(out.split())
    assert "[p0] What does json.dumps do?" in out and "alpha@50" in out and "beta@100" in out
    assert "(empty answer)" in out and "reference  Serialize obj to a JSON formatted str." in out


def test_errors_and_their_exit_codes(capsys, runs_dir):
    code, _, err = _cli(capsys, runs_dir, "alpha", "--step", "soon")
    assert code == 2 and "--step 'soon' is not a step" in err
    code, _, err = _cli(capsys, runs_dir, "alpha", "--step", "75")
    assert code == 2 and "no samples at step 75; it has some at 50, 100" in err
    code, _, err = _cli(capsys, runs_dir, "gamma")
    assert code == 4 and "gamma" in err
    with Store(runs_dir) as s:
        s.create_run({}, {}, name="empty", status="completed")
    code, _, err = _cli(capsys, runs_dir, "empty")
    assert code == 1 and "has no samples" in err and "generation.prompts" in err
    # one run without samples beside one with: shown, with a note naming the other
    code, out, err = _cli(capsys, runs_dir, "alpha", "empty", "--format", "json")
    assert code == 0 and json.loads(out) and "note: run" in err and "(empty) has no samples" in err
