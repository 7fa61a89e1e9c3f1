"""End to end on a short run of configs/sft-demo.yaml: each evaluation stores its answers as
scored samples (references for the held-out prompts) with samples/* metrics; `tuitrain samples
--format json` gives back exactly the stored rows; `tuitrain ask` answers a new prompt with the
run's checkpoints in a short-lived process and stores it; the TUI-side spawner does the same."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.train.helpers import ENV
from tuitrain.runs.ask import error_line, parse_answers, prompt_id, spawn_ask
from tuitrain.samples import scores
from tuitrain.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
QUESTION = "What does json.dumps do?"  # the config's generation prompt p0


def _cli(runs_dir, *argv, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", "--runs-dir", str(runs_dir), *argv],
        capture_output=True, text=True, timeout=timeout, env={**__import__("os").environ, **ENV},
    )  # fmt: skip


def test_each_eval_stores_scored_samples_with_references(sft_trained):
    with Store(sft_trained.runs_dir) as s:
        rid = sft_trained.run_id
        rows = s.samples.for_runs([rid])
        metrics = {(p.step, p.name): p.value for p in s.tail(rid, list(scores.METRICS))}
        events = [e for e in s.events(rid) if e.kind == "generation"]
    assert [(r.step, r.prompt_id, r.source) for r in rows] == [
        (step, pid, src)
        for step in (20, 40)
        for pid, src in (("p0", "prompt"), ("v0", "val"), ("v1", "val"))
    ]
    for r in rows:
        assert r.settings == {"mode": "greedy", "max_new_tokens": 16}
        assert 1 <= r.tokens <= 16 and r.seconds > 0 and isinstance(r.output, str)
        assert "<|im_start|>" not in r.output and "<|im_end|>" not in r.output
        assert r.repetition == pytest.approx(scores.repetition(r.output))
        if r.source == "val":
            assert r.reference and "<|im_end|>" not in r.reference and r.messages is None
            assert r.exact_match == scores.exact_match(r.output, r.reference)
            assert r.similarity == pytest.approx(scores.similarity(r.output, r.reference))
        else:
            assert r.prompt == QUESTION and r.reference is None and r.exact_match is None
            assert r.messages == [{"role": "user", "content": QUESTION}]
    # the same held-out prompts and references at every eval (prompt ids are stable)
    at = {(r.step, r.prompt_id): r for r in rows}
    assert all(at[(20, p)].reference == at[(40, p)].reference for p in ("v0", "v1"))
    for step in (20, 40):
        want = scores.means([vars(r) for r in rows if r.step == step])
        assert {n: metrics[(step, n)] for n in scores.METRICS} == pytest.approx(want)
    # the events pane keeps its one-line generation events
    assert len(events) == 6 and all("\n" not in e.message and " -> " in e.message for e in events)
    assert {e.data["prompt_id"] for e in events} == {"p0", "v0", "v1"}


def test_samples_json_round_trips_to_the_store(sft_trained):
    got = _cli(sft_trained.runs_dir, "samples", sft_trained.run_id, "--format", "json")
    assert got.returncode == 0, got.stderr
    objs = json.loads(got.stdout)
    with Store(sft_trained.runs_dir) as s:
        stored = s.samples.for_runs([sft_trained.run_id])
    assert len(objs) == len(stored) == 6
    for o, r in zip(objs, stored, strict=True):
        assert o["run"] == r.run_id and o["run_name"] == "sft"
        assert {k: o[k] for k in vars(r) if k != "run_id"} == {
            k: v for k, v in vars(r).items() if k != "run_id"
        }


def test_ask_answers_with_the_checkpoint_and_stores_a_sample(sft_copy):
    runs_dir, rid = sft_copy
    # the newest checkpoint (step 40) answers the eval prompt exactly as the eval at step 40 did
    got = _cli(runs_dir, "ask", rid, QUESTION, "--checkpoint", "last", "--format", "json")
    assert got.returncode == 0, got.stderr
    (answer,) = json.loads(got.stdout)
    with Store(runs_dir) as s:
        evals = {r.step: r for r in s.samples.for_runs([rid]) if r.prompt_id == "p0"}
        best = s.get_run(rid).summary["best_step"]
        asked = [r for r in s.samples.for_runs([rid]) if r.source == "ask"]
    assert answer["step"] == 40 and answer["checkpoint"] == "step-40"
    assert answer["prompt_id"] == prompt_id(QUESTION)
    assert answer["output"] == evals[40].output  # greedy: same weights, template, settings
    (row,) = asked
    assert row.id == answer["sample_id"] and row.step == 40 and row.output == answer["output"]
    assert row.messages == [{"role": "user", "content": QUESTION}] and row.reference is None
    assert row.settings == {"mode": "greedy", "max_new_tokens": 16, "checkpoint": "step-40"}
    assert row.repetition == pytest.approx(scores.repetition(row.output))
    # the TUI's way: spawn, wait, read; the best weights (training.save_best) answer at best_step
    # as the evaluation at that step did
    proc = spawn_ask(runs_dir, [rid], QUESTION, checkpoint="best")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, error_line(err, proc.returncode)
    (a,) = parse_answers(out)
    assert a["step"] == best and a["checkpoint"] == f"best-{best}"
    assert a["output"] == evals[best].output
    with Store(runs_dir) as s:
        assert [r.step for r in s.samples.for_runs([rid]) if r.source == "ask"] == [40, best]
