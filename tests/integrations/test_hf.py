"""Tests TuiTrainCallback on a real HF Trainer run (tiny GPT-2 from config, CPU): steered from the
store by set_lr, scale_lr and stop, then resumed from the stop checkpoint with the LR multiplier."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tuitrain.integrations.hf import TuiTrainCallback, metric_rows  # noqa: E402
from tuitrain.store import Store  # noqa: E402

MAX_STEPS = 2000  # never reached: the test stops the run from the store
BASE_LR = 1e-3


def linear(step: int) -> float:
    """HF's linear schedule without warmup: the factor for the update after `step` steps."""
    return (MAX_STEPS - step) / MAX_STEPS


class Tokens(torch.utils.data.Dataset):
    """Random token sequences: enough to make real gradients, nothing to download."""

    def __init__(self, n: int = 512, length: int = 16, vocab: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, vocab, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "labels": self.x[i]}


class Pace(transformers.TrainerCallback):
    """Sleeps a little per step so the run lasts long enough to be steered, without burning CPU;
    optionally stops at a given step (stands in for any other callback that ends training)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at

    def on_step_end(self, args, state, control, **kw):
        time.sleep(0.01)
        if self.stop_at is not None and state.global_step >= self.stop_at:
            control.should_training_stop = True
        return control


def make_trainer(out, callbacks) -> transformers.Trainer:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=64,
        n_positions=32,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = transformers.GPT2LMHeadModel(cfg)
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=MAX_STEPS,
        per_device_train_batch_size=4,
        learning_rate=BASE_LR,
        lr_scheduler_type="linear",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="steps",
        eval_steps=10**6,  # evaluations happen on command only
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    return transformers.Trainer(
        model=model,
        args=args,
        train_dataset=Tokens(),
        eval_dataset=Tokens(n=16),
        callbacks=callbacks,
    )


def steer(runs_dir, plan, results, errors) -> None:
    """Thread body: wait for the run, then send each (kind, payload) and wait for its outcome."""
    try:
        store = Store(runs_dir)
        deadline = time.monotonic() + 60
        run = None
        while time.monotonic() < deadline:
            runs = [
                r for r in store.list_runs() if r.status == "running" and (r.last_step or 0) >= 5
            ]
            if runs:
                run = runs[0]
                break
            time.sleep(0.05)
        assert run is not None, "the run never appeared as running with 5 steps logged"
        for kind, payload in plan:
            cid = store.send_command(run.id, kind, payload)
            cmd = store.wait_command(cid, timeout=30)
            results.append(cmd)
            assert cmd.status == "applied", (kind, cmd)
            time.sleep(0.1)  # a few steps between commands
        store.close()
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def lr_by_step(store: Store, run_id: str) -> dict[int, float]:
    return {p.step: p.value for p in store.tail(run_id, names=["lr"])}


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_trainer_steered_from_store_then_resumed(tmp_path):
    torch.set_num_threads(1)
    runs = tmp_path / "runs"
    out = tmp_path / "out"
    cb = TuiTrainCallback(runs_dir=runs, name="hf-tiny")
    trainer = make_trainer(out, [cb, Pace()])
    results, errors = [], []
    plan = [
        ("set_lr", {"lr": 2.5e-3}),
        ("scale_lr", {"factor": 0.5}),
        ("checkpoint", None),
        ("eval", None),
        ("stop", None),
    ]
    t = threading.Thread(target=steer, args=(runs, plan, results, errors), daemon=True)
    t.start()
    trainer.train()
    t.join(timeout=60)
    assert not errors, errors
    set_cmd, scale_cmd, ckpt_cmd, eval_cmd, stop_cmd = results
    s1, s2, s3 = set_cmd.applied_step, scale_cmd.applied_step, stop_cmd.applied_step
    assert 5 <= s1 < s2 < ckpt_cmd.applied_step < eval_cmd.applied_step < s3 < MAX_STEPS
    assert trainer.state.global_step == s3

    store = Store(runs)
    run = store.get_run("hf-tiny")
    assert run.status == "early_stopped"
    assert run.derived["source"] == "hf" and run.derived["total_steps"] == MAX_STEPS
    assert run.config["training_args"]["learning_rate"] == BASE_LR
    assert run.summary["steps"] == s3
    lrs = lr_by_step(store, run.id)
    assert store.last_step(run.id) == s3
    # Before the command: the configured schedule. HF logs the LR the update at step s used.
    for s in (1, s1):
        assert lrs[s] == pytest.approx(BASE_LR * linear(s - 1), rel=1e-9)
    # The first update after set_lr uses exactly the LR asked for; then the schedule keeps its shape.
    assert lrs[s1 + 1] == pytest.approx(2.5e-3, rel=1e-9)
    mult = 2.5e-3 / (BASE_LR * linear(s1))
    for s in range(s1 + 1, s2 + 1):
        assert lrs[s] == pytest.approx(BASE_LR * linear(s - 1) * mult, rel=1e-9)
    assert lrs[s2 + 1] == pytest.approx(BASE_LR * linear(s2) * mult * 0.5, rel=1e-9)
    assert lrs[s3] == pytest.approx(BASE_LR * linear(s3 - 1) * mult * 0.5, rel=1e-9)
    assert cb.lr_multiplier == pytest.approx(mult * 0.5, rel=1e-12)
    assert {"loss", "lr", "grad_norm", "epoch"} <= set(store.metric_names(run.id))
    assert "sys/cpu_percent" in store.metric_names(run.id)  # the writer thread sampled the host

    assert (out / f"checkpoint-{ckpt_cmd.applied_step}").is_dir()
    assert [p.step for p in store.tail(run.id, names=["val_loss"])] == [eval_cmd.applied_step]
    kinds = [e.kind for e in store.events(run.id)]
    for kind in ("started", "lr", "command", "checkpoint", "finished"):
        assert kind in kinds
    lr_events = [e for e in store.events(run.id) if e.kind == "lr"]
    assert [e.step for e in lr_events] == [s1, s2]  # a steered curve can be rebuilt from these
    # The stop saved a checkpoint whose trainer state carries the multiplier as a plain float.
    ckpt = out / f"checkpoint-{s3}"
    saved = json.loads((ckpt / "trainer_state.json").read_text())["stateful_callbacks"][
        "TuiTrainCallback"
    ]
    assert saved["attributes"]["lr_multiplier"] == pytest.approx(mult * 0.5, rel=1e-12)
    assert saved["attributes"]["run_id"] == run.id

    # Resume from that checkpoint (scheduler/optimizer loaded with weights_only): the same run
    # record continues and the LR continues the steered curve.
    cb2 = TuiTrainCallback(runs_dir=runs, name="hf-tiny")
    trainer2 = make_trainer(out, [cb2, Pace(stop_at=s3 + 3)])
    trainer2.train(resume_from_checkpoint=str(ckpt))
    assert cb2.run_id == run.id and cb2.lr_multiplier == pytest.approx(mult * 0.5, rel=1e-12)
    lrs = lr_by_step(store, run.id)
    assert lrs[s3 + 1] == pytest.approx(BASE_LR * linear(s3) * mult * 0.5, rel=1e-9)
    run = store.get_run(run.id)
    assert run.status == "early_stopped" and run.summary["steps"] == s3 + 3
    assert "resumed" in [e.kind for e in store.events(run.id)]
    assert len(store.list_runs()) == 1
    # evaluate() after train(): recorded too, though the run has ended.
    metrics = trainer2.evaluate(eval_dataset=Tokens(n=32))
    point = store.tail(run.id, names=["val_loss"])[-1]
    assert point.step == s3 + 3 and point.value == pytest.approx(metrics["eval_loss"])
    assert store.get_run(run.id).summary["final_val_loss"] == pytest.approx(metrics["eval_loss"])
    assert "val_perplexity" in store.metric_names(run.id)
    store.close()


@pytest.mark.timeout(60)
def test_metric_rows_maps_hf_names():
    metrics, summary = metric_rows(
        {
            "loss": 2.0,
            "learning_rate": 1e-4,
            "grad_norm": 0.5,
            "epoch": 0.25,
            "eval_loss": 1.5,
            "eval_accuracy": 0.8,
            "eval_runtime": 3.0,
            "train_runtime": 12.0,
            "note": "x",
        }
    )
    assert metrics == {
        "loss": 2.0,
        "lr": 1e-4,
        "grad_norm": 0.5,
        "epoch": 0.25,
        "eval_loss": 1.5,
        "val_loss": 1.5,
        "eval_accuracy": 0.8,
        "val_accuracy": 0.8,
        "eval_runtime": 3.0,
    }
    assert summary == {"wall_time_s": 12.0}
    assert math.isnan(metric_rows({"loss": float("nan")})[0]["loss"])


class Boom(transformers.TrainerCallback):
    """Raises inside training, as a bug in user code would."""

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 3:
            raise RuntimeError("boom")


@pytest.mark.timeout(120)
def test_a_train_that_raised_is_marked_failed_by_the_next_train(tmp_path):
    torch.set_num_threads(1)
    runs = tmp_path / "runs"
    cb = TuiTrainCallback(runs_dir=runs, name="notebook")
    trainer = make_trainer(tmp_path / "out", [cb, Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    store = Store(runs)
    (first,) = store.list_runs()
    assert first.status == "running"  # the process lives on (a notebook): nothing ended it yet
    trainer.remove_callback(Boom)
    trainer.args.max_steps = 4
    trainer.train()
    first = store.get_run(first.id)
    assert first.status == "failed" and "without on_train_end" in first.exit_reason
    second = next(r for r in store.list_runs() if r.id != first.id)
    assert second.status == "completed" and second.summary["steps"] == 4
    assert store.last_step(second.id) == 4
    store.close()


@pytest.mark.timeout(60)
def test_commands_it_cannot_apply_get_a_reason(tmp_path):
    from tuitrain.steering import SteerCommand, SteeringPoller

    cb = TuiTrainCallback(runs_dir=tmp_path)
    cb._poller = SteeringPoller(None)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    control = transformers.TrainerControl()
    reason = cb._apply(SteerCommand(1, "eval"), args, 5, control)
    assert "eval_strategy='no'" in reason and not control.should_evaluate
    reason = cb._apply(SteerCommand(2, "set_lr", 1e-4), args, 5, control)
    assert "not a LambdaLR" in reason  # no scheduler attached (e.g. reduce_lr_on_plateau)
