"""Asking a checkpoint, the torch-free side: which weights answer (best if kept, else the newest
complete checkpoint), the answering process's command line as its own parser reads it, and the
one-line errors (no checkpoint, no run, not a language model) with their exit codes, from the
CLI and from the real process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tuitrain.cli import exits, main
from tuitrain.runs import ask
from tuitrain.runs.checkpoints import write_done
from tuitrain.store import Store


def _ckpt(run_dir: Path, name: str, info: dict) -> Path:
    d = run_dir / "checkpoints" / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"weights")
    if name.startswith("best-"):
        (d / "complete.json").write_text(json.dumps(info))  # as checkpoint.save_best writes it
    else:
        write_done(d, info)
    return d


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path) as s:
        yield s


def _run(store, name: str, task: str = "causal-lm", summary: dict | None = None):
    run = store.create_run({"model": {"task": task}}, {}, name=name, status="completed")
    Path(run.run_dir).mkdir(parents=True, exist_ok=True)
    if summary:
        store.update_run(run.id, summary=summary)
    return store.get_run(run.id)


def test_exit_codes_are_the_clis():
    assert (ask.OK, ask.FAILED, ask.BAD_INPUT, ask.NOT_FOUND) == (
        exits.OK,
        exits.FAILED,
        exits.BAD_INPUT,
        exits.NOT_FOUND,
    )


def test_best_weights_answer_else_the_newest_checkpoint(store):
    run = _run(store, "a", summary={"best_step": 20, "data": {"format": "chat"}})
    rd = Path(run.run_dir)
    _ckpt(rd, "step-20", {"step": 20})
    _ckpt(rd, "step-40", {"step": 40})
    t = ask.choose(run, "last")
    assert (t.kind, t.step, t.label, t.note, t.data_format) == ("step", 40, "step-40", None, "chat")
    t = ask.choose(run, "best")  # no best-N kept: the newest checkpoint, saying why
    assert t.label == "step-40" and "training.save_best" in t.note
    _ckpt(rd, "best-20", {"step": 20, "metric": "val_loss", "value": 1.0})
    _ckpt(rd, "best-10", {"step": 10, "metric": "val_loss", "value": 2.0})
    (rd / "checkpoints" / "best-30").mkdir()  # half written: no complete.json
    t = ask.choose(run, "best")
    assert (t.kind, t.step, t.label, t.note) == ("best", 20, "best-20", None)
    # a damaged newest checkpoint is passed over (sizes checked against its manifest)
    (rd / "checkpoints" / "step-40" / "model.safetensors").write_bytes(b"w")
    assert ask.choose(run, "last").label == "step-20"


def test_no_checkpoint_names_the_run_and_the_fix(store):
    run = _run(store, "fresh")
    with pytest.raises(ask.AskError) as e:
        ask.choose(run, "best")
    assert e.value.code == ask.NOT_FOUND
    assert f"run {run.id} (fresh) has no complete checkpoint" in str(e.value)
    assert "training.save_every" in str(e.value)
    cls = _run(store, "cls", task="seq-cls")
    _ckpt(Path(cls.run_dir), "step-5", {"step": 5})
    with pytest.raises(ask.AskError, match="seq-cls model: only causal-lm runs answer prompts"):
        ask.choose(cls, "last")
    with pytest.raises(ask.AskError) as e:
        ask.plan(store, ["nobody"])
    assert e.value.code == ask.NOT_FOUND and "nobody" in str(e.value)
    with pytest.raises(ask.AskError, match="best or last"):
        ask.choose(run, "newest")
    with pytest.raises(ask.AskError, match="empty"):
        ask.check_prompt("  \n")


def test_the_process_reads_back_its_command_line():
    from tuitrain.train.ask import _parser

    argv = ask.ask_argv("/r", ["a", "b"], "-x | what?", checkpoint="last", max_new_tokens=7)
    assert argv[:3] == [sys.executable, "-m", "tuitrain.train.ask"]
    got = _parser().parse_args(argv[3:])
    assert (got.runs_dir, got.run, got.prompt) == ("/r", ["a", "b"], "-x | what?")
    assert (got.checkpoint, got.max_new_tokens, got.format) == ("last", 7, "json")
    assert ask.prompt_id(" What? ") == ask.prompt_id("What?") != ask.prompt_id("What")
    assert ask.prompt_id("What?").startswith("ask:") and len(ask.prompt_id("x")) == 12


def test_error_line_takes_the_last_error():
    err = "Some library warning\nerror: run x has no complete checkpoint\n"
    assert ask.error_line(err) == "run x has no complete checkpoint"
    assert ask.error_line("Traceback...\nKeyError: 'x'\n") == "KeyError: 'x'"
    assert "exit 1" in ask.error_line("", 1)


def test_no_checkpoint_from_the_cli_and_from_the_process(tmp_path, capsys):
    with Store(tmp_path) as s:
        run = _run(s, "fresh")
    code = main(["--runs-dir", str(tmp_path), "ask", "fresh", "What is 2+2?"])
    err = capsys.readouterr().err
    assert code == exits.NOT_FOUND and "fresh) has no complete checkpoint" in err
    assert main(["--runs-dir", str(tmp_path), "ask", "nobody", "hi"]) == exits.NOT_FOUND
    assert main(["--runs-dir", str(tmp_path), "ask", "fresh", " "]) == exits.BAD_INPUT
    proc = ask.spawn_ask(tmp_path, [run.id], "What is 2+2?")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ask.NOT_FOUND and out == ""
    assert ask.error_line(err).startswith(f"run {run.id} (fresh) has no complete checkpoint")
