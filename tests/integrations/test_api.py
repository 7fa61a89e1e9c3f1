"""Tests the custom-loop API on a real PyTorch loop: logging, steering by poll/ack, finishing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

import tuitrain
from tuitrain.store import Store


@pytest.mark.timeout(120)
def test_plain_torch_loop_logs_polls_and_finishes(tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    runs = tmp_path / "runs"
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1)
    run = tuitrain.init(
        name="loop", config={"lr": 0.05, "model": "linear"}, runs_dir=runs, poll_interval=0.05
    )
    store = Store(runs)
    applied: dict[str, int] = {}
    sent = {}
    step = 0
    while step < 5000:  # bounded; the stop command ends it long before
        step += 1
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"loss": loss.detach(), "lr": opt.param_groups[0]["lr"]}, step=step)
        if step == 10:
            sent["set_lr"] = store.send_command(run.id, "set_lr", {"lr": 0.01})
            sent["eval"] = store.send_command(run.id, "eval")
        for cmd in run.poll(step):
            if cmd.kind == "set_lr":
                for g in opt.param_groups:
                    g["lr"] = cmd.value
                run.ack(cmd, step, f"lr {cmd.value}")
            elif cmd.kind == "stop":
                run.ack(cmd, step)
                applied["stop"] = step
            else:
                run.reject(cmd, f"{cmd.kind} is not supported by this loop", step)
            applied.setdefault(cmd.kind, step)
        if "set_lr" in applied and "stop" not in sent:
            sent["stop"] = store.send_command(run.id, "stop")
        if "stop" in applied:
            break
        time.sleep(0.002)
    run.finish("early_stopped", summary={"final_loss": loss.item()})

    info = store.get_run(run.id)
    assert info.status == "early_stopped" and info.name == "loop"
    assert info.config == {"lr": 0.05, "model": "linear"} and info.derived["source"] == "api"
    assert info.summary["steps"] == step and info.summary["final_loss"] == pytest.approx(
        loss.item()
    )
    set_cmd = store.get_command(sent["set_lr"])
    assert set_cmd.status == "applied" and set_cmd.applied_step == applied["set_lr"] >= 10
    assert store.get_command(sent["eval"]).status == "rejected"
    assert store.get_command(sent["stop"]).applied_step == applied["stop"] == step
    lrs = {p.step: p.value for p in store.tail(run.id, names=["lr"])}
    assert len(lrs) == step
    assert lrs[applied["set_lr"]] == pytest.approx(0.05) and lrs[
        applied["set_lr"] + 1
    ] == pytest.approx(0.01)
    losses = [p.value for p in store.tail(run.id, names=["loss"])]
    assert len(losses) == step and losses[-1] < losses[0]
    assert [e.kind for e in store.events(run.id)][-1] == "finished"
    with pytest.raises(RuntimeError, match="has finished"):
        run.log({"loss": 1.0})
    store.close()


@pytest.mark.timeout(60)
def test_bad_input_names_the_field(tmp_path):
    with tuitrain.init(name="bad", runs_dir=tmp_path) as run:
        with pytest.raises(ValueError, match="metric 'acc' has value 'high'"):
            run.log({"acc": "high"})
        with pytest.raises(ValueError, match="step must be a non-negative int"):
            run.log({"loss": 1.0}, step=-1)
        with pytest.raises(ValueError, match="status must be one of"):
            run.finish("done")
        run.log({"loss": 1.0})
        run.log({"loss": 0.5})
    with Store(tmp_path) as store:
        info = store.get_run("bad")
        assert info.status == "completed" and [p.step for p in store.tail(info.id, ["loss"])] == [
            1,
            2,
        ]
    with pytest.raises(TypeError, match="config must be a dict"):
        tuitrain.init(config=["lr", 1], runs_dir=tmp_path)


SCRIPT = """
import sys, tuitrain
run = tuitrain.init(name=sys.argv[2], runs_dir=sys.argv[1])
run.log({{"loss": 1.0}}, step=1)
{ending}
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("ending", "status"),
    [("raise RuntimeError('boom')", "failed"), ("pass", "completed")],
)
def test_script_that_never_calls_finish_still_ends_its_run(tmp_path, ending, status):
    code = SCRIPT.format(ending=ending)
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path), "s"],
        capture_output=True,
        timeout=60,
    )
    with Store(tmp_path) as store:
        info = store.get_run("s")
        assert info.status == status
        assert store.last_step(info.id) == 1
        if status == "failed":
            assert "RuntimeError: boom" in (info.exit_reason or "")


@pytest.mark.timeout(120)
def test_steer_lr_applies_lr_commands_inside_poll(tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    total = 10_000
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / total)
    run = tuitrain.init(name="steered", runs_dir=tmp_path, poll_interval=0.02)
    run.steer_lr(sched)
    store = Store(tmp_path)
    cid = None
    returned = []
    for step in range(1, total):
        run.log({"lr": sched.get_last_lr()[0]}, step=step)  # the LR this update uses
        opt.step()
        sched.step()
        if step == 5:
            cid = store.send_command(run.id, "set_lr", {"lr": 3e-3})
            stop_id = store.send_command(run.id, "stop")
        cmds = run.poll(step)
        returned += cmds
        if any(c.kind == "stop" for c in cmds):
            run.ack(cmds[-1], step)
            break
        time.sleep(0.002)
    run.finish("early_stopped")
    assert [c.kind for c in returned] == ["stop"]  # the LR command was handled by poll()
    s1 = store.get_command(cid).applied_step
    assert store.get_command(stop_id).applied_step == s1 == step
    assert sched.get_last_lr()[0] == pytest.approx(3e-3)
    assert run.lr_multiplier == pytest.approx(3e-3 / (1e-2 * (1 - s1 / total)))
    assert [e.kind for e in store.events(run.id) if e.kind == "lr"] == ["lr"]
    store.close()


@pytest.mark.timeout(60)
def test_init_samples_system_metrics_off_the_log_path(tmp_path):
    """tuitrain.init's writer thread samples sys/ (CPU, RAM, disk here; GPUs with NVML);
    system_interval=0 turns it off."""
    runs = tmp_path / "runs"
    on = tuitrain.init(name="sys-on", runs_dir=runs, system_interval=0.05)
    off = tuitrain.init(name="sys-off", runs_dir=runs, system_interval=0)
    deadline = time.monotonic() + 30
    step = 0
    with Store(runs) as store:
        while not any(n.startswith("sys/") for n in store.metric_names(on.id)):
            assert time.monotonic() < deadline, "no sys/ sample within 30 s"
            step += 1
            on.log({"loss": 1.0 / step}, step=step)
            off.log({"loss": 1.0 / step}, step=step)
            time.sleep(0.02)  # a training step's worth of time; the wait is the loop's condition
        on.finish()
        off.finish()
        names = set(store.metric_names(on.id))
        assert {"sys/cpu_count", "sys/ram_total_gb", "sys/disk_free_gb"} <= names, names
        assert not [n for n in store.metric_names(off.id) if n.startswith("sys/")]
