"""Trainer parts without a subprocess: data, LR control, steering, launcher command, CLI edges."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tuitrain.cli import main as cli_main
from tuitrain.config import TrainConfig, load_config, parse
from tuitrain.config.derived import steps_per_epoch
from tuitrain.config.schedule import lr_factor
from tuitrain.data.estimate import estimate_train_samples
from tuitrain.data.sources import DataError
from tuitrain.runs.launch import build_command, build_env
from tuitrain.steering import SteeringPoller, StoreSource, validate
from tuitrain.store import Store
from tuitrain.train.data import BYTE_VOCAB, BatchPlan, ByteTokenizer, build_splits
from tuitrain.train.model import SetupError, build_model
from tuitrain.train.optim import Lion, LRControl

from .helpers import DEMO, REPO, TINY


def test_byte_tokenizer_round_trips_utf8():
    tok = ByteTokenizer()
    ids = tok.encode("héllo ✓")
    assert max(ids) < 256 and tok.vocab_size == BYTE_VOCAB == 259
    assert tok.decode(ids + [tok.eos_token_id]) == "héllo ✓"


@pytest.mark.parametrize("extra", [[], ["data.max_train_samples=50"]])
def test_stdlib_split_matches_the_editor_estimate(extra):
    cfg = load_config(DEMO, sets=TINY + extra).config
    splits = build_splits(cfg, ByteTokenizer())
    assert len(splits.train) == estimate_train_samples(cfg)[0]
    assert splits.val is not None and len(splits.val) > 0
    assert splits.train.tensors["input_ids"].shape[1] == cfg.data.max_seq_length


def test_jsonl_packing_and_labels(tmp_path):
    f = tmp_path / "d.jsonl"
    rows = [
        {"text": f"example number {i} " * 3, "label": "pos" if i % 2 else "neg"} for i in range(40)
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    base = {
        "model": {"tokenizer": "bytes", "arch": {"max_position_embeddings": 64}},
        "data": {"train_file": str(f), "max_seq_length": 32},
    }
    cfg = parse(base)
    assert len(build_splits(cfg, ByteTokenizer()).train) == estimate_train_samples(cfg)[0]
    cls = parse(
        {
            **base,
            "model": {
                **base["model"],
                "task": "seq-cls",
                "arch": {"type": "bert", "max_position_embeddings": 64},
            },
        }
    )
    s = build_splits(cls, ByteTokenizer())
    assert s.label_names == ["neg", "pos"] and set(s.train.tensors["labels"].tolist()) <= {0, 1}
    three = [{"text": "x", "label": k} for k in ("a", "b", "c")]
    f.write_text("\n".join(json.dumps(r) for r in three))
    with pytest.raises(DataError, match="model.num_labels: 3"):
        build_splits(cls, ByteTokenizer())


@pytest.mark.parametrize(
    ("n", "micro", "world", "accum"), [(10, 3, 2, 1), (101, 4, 3, 2), (7, 8, 1, 3), (64, 8, 2, 4)]
)
def test_batch_plan_covers_data_and_matches_derived_steps(n, micro, world, accum):
    plans = [BatchPlan(n, micro, r, world, seed=1) for r in range(world)]
    seen = torch.cat([torch.cat(list(p.batches(epoch=0))) for p in plans])
    assert set(seen.tolist()) == set(range(n))
    assert all(p.num_batches == plans[0].num_batches for p in plans)
    assert math.ceil(plans[0].num_batches / accum) == steps_per_epoch(n, micro, world, accum)
    skipped = list(plans[0].batches(epoch=0, skip=1))
    assert [b.tolist() for b in skipped] == [
        b.tolist() for b in list(plans[0].batches(epoch=0))[1:]
    ]
    assert not torch.equal(plans[0].indices(0), plans[0].indices(1)) or n < 3


def test_lr_control_set_lr_keeps_schedule_shape_and_survives_weights_only(tmp_path):
    cfg = load_config(
        DEMO, sets=["scheduler.name=cosine", "scheduler.warmup_ratio=0", "scheduler.eta_min=0"]
    ).config
    lrc = LRControl(cfg, 1e-3, total_steps=100, warmup_steps=0)
    before = [lrc.lr(s) for s in range(100)]
    lrc.set_lr(2e-4, step=40)
    assert lrc.lr(40) == pytest.approx(2e-4)
    ratio = lrc.lr(70) / before[70]
    assert ratio == pytest.approx(2e-4 / before[40])  # the rest of the schedule keeps its shape
    lrc.scale_lr(0.5)
    assert lrc.lr(40) == pytest.approx(1e-4)
    torch.save(lrc.state_dict(), tmp_path / "s.pkl")
    again = LRControl(cfg, 1e-3, 100, 0)
    again.load_state_dict(torch.load(tmp_path / "s.pkl", weights_only=True))
    assert again.lr(55) == pytest.approx(lrc.lr(55))
    warm = LRControl(
        load_config(DEMO, sets=["scheduler.warmup_steps=10", "scheduler.warmup_ratio=0"]).config,
        1e-3,
        100,
        10,
    )
    # During the warmup the set LR is its target: the warmup climbs on to it, never past it.
    warm.set_lr(2e-4, step=9)
    assert warm.in_warmup(9) and not warm.in_warmup(10)
    assert warm.lr(10) == pytest.approx(2e-4)
    assert warm.lr(9) == pytest.approx(2e-4 * lr_factor(9, warm.sched, 100, 10, 1e-3))
    assert max(warm.lr(s) for s in range(100)) == pytest.approx(2e-4)
    warm.set_lr(5e-4, step=0)  # even at the warmup's start (the schedule's 0 there)
    assert warm.lr(10) == pytest.approx(5e-4)
    warm.set_lr(3e-4, step=30)  # after the warmup: the next update's LR
    assert warm.lr(30) == pytest.approx(3e-4)
    decayed = LRControl(
        load_config(DEMO, sets=["scheduler.name=linear", "scheduler.eta_min=0"]).config,
        1e-3,
        100,
        0,
    )
    with pytest.raises(ValueError, match="end of decay"):
        decayed.set_lr(1e-3, step=100)


def test_lr_control_rewarm_ramps_to_the_schedule_and_composes_with_steering(tmp_path):
    """A branch's re-warm: the next update uses the parent's LR, then a straight line to the
    schedule over N steps; scale_lr multiplies the ramp too; set_lr during it sets the target at
    its end; it survives a checkpoint (and a checkpoint from before re-warms loads)."""
    cfg = load_config(
        DEMO, sets=["scheduler.name=cosine", "scheduler.warmup_ratio=0", "scheduler.eta_min=0"]
    ).config
    lrc = LRControl(cfg, 1e-3, total_steps=200, warmup_steps=0)
    sched = [lrc.lr(s) for s in range(200)]
    lrc.start_rewarm(100, 20, 1e-5)
    assert lrc.lr(100) == pytest.approx(1e-5)
    # Linear in the factor: the share of the schedule grows by the same step each update.
    shares = [lrc.lr(s) / sched[s] for s in range(100, 121)]
    steps = [b - a for a, b in zip(shares, shares[1:], strict=False)]
    assert all(d == pytest.approx(steps[0]) for d in steps[:20]) and steps[0] > 0
    assert lrc.lr(120) == pytest.approx(sched[120]) and lrc.lr(150) == pytest.approx(sched[150])
    assert lrc.lr(99) == pytest.approx(sched[99])  # before the fork: untouched
    lrc.scale_lr(2.0)
    assert lrc.lr(105) == pytest.approx(2 * shares[5] * sched[105])
    assert lrc.in_warmup(105) and lrc.warmup_progress(105) == ("re-warm", 25.0)
    lrc.set_lr(4e-4, step=105)
    assert lrc.lr(120) == pytest.approx(4e-4)  # the target, at the re-warm's end
    state = json.loads(json.dumps(lrc.state_dict()))
    again = LRControl(cfg, 1e-3, 200, 0)
    again.load_state_dict(state)
    assert again.lr(110) == pytest.approx(lrc.lr(110))
    old = {k: v for k, v in state.items() if not k.startswith("rewarm")}
    plain = LRControl(cfg, 1e-3, 200, 0)
    plain.load_state_dict(old)
    assert plain.rewarm(110) == 1.0 and not plain.in_warmup(110)
    off = LRControl(cfg, 1e-3, 200, 0)
    off.start_rewarm(100, 0, 1e-5)
    assert off.lr(100) == pytest.approx(sched[100])


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        ("set_lr", {"lr": float("nan")}, "finite"),
        ("set_lr", {"lr": -1}, "> 0"),
        ("scale_lr", {"factor": float("inf")}, "finite"),
        ("set_lr", {}, "needs a number"),
        ("dance", {}, "unknown"),
    ],
)
def test_invalid_commands_are_rejected_with_reason(kind, payload, reason):
    out = validate(1, kind, payload)
    assert isinstance(out, str) and reason in out


def test_poller_claims_at_most_every_interval_and_acks(tmp_path):
    cfg = load_config(DEMO).config
    store = Store(tmp_path)
    run = store.create_run({}, {}, name="p", status="running")
    now = [0.0]
    poller = SteeringPoller(StoreSource(tmp_path, run.id), interval=0.25, clock=lambda: now[0])
    cid = store.send_command(run.id, "set_lr", {"lr": "5e-5"})
    assert poller.poll(1) == []  # the clock has not moved: no query
    now[0] = 0.3
    (cmd,) = poller.poll(2)
    assert cmd.kind == "set_lr" and cmd.value == 5e-5
    assert poller.poll(3) == []  # claimed once
    poller.ack(cmd, 2, "ok")
    assert store.get_command(cid).status == "applied" and store.get_command(cid).applied_step == 2
    assert [c.kind for c in poller.poll(4, stop_requested=True)] == ["sigterm"]
    assert cfg.training.log_every >= 1


def test_build_command_for_cpu_ranks_and_resume(tmp_path):
    two = load_config(DEMO, sets=["launch.num_processes=2", "launch.cpu=true"]).config
    cmd = build_command(two, tmp_path, resume=True)
    assert (
        "--multi_gpu" in cmd and "--cpu" not in cmd and cmd[cmd.index("--num_processes") + 1] == "2"
    )
    assert cmd[-4:] == ["-m", "tuitrain.train", str(tmp_path.resolve()), "--resume"]
    assert build_env(two)["ACCELERATE_USE_CPU"] == "1"
    one = build_command(load_config(DEMO, sets=["launch.cpu=true"]).config, tmp_path)
    assert "--cpu" in one and "--multi_gpu" not in one and "--resume" not in one


def test_lion_descends_a_quadratic():
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = Lion([w], lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    # Sign updates move each weight by exactly lr per step towards the minimum.
    assert w.detach().tolist() == pytest.approx([1.0, 0.0], abs=1e-5)


def test_qlora_without_cuda_fails_before_training():
    cfg = load_config(
        REPO / "configs" / "seq-cls-minilm.yaml", sets=["peft.method=qlora", "peft.bits=4"]
    ).config
    with pytest.raises(SetupError, match="peft.method: qlora"):
        build_model(cfg, None)


def test_cli_resume_and_stop_edges(tmp_path, capsys):
    store = Store(tmp_path)
    run = store.create_run({}, {}, name="done", status="completed")
    store.run_dir(run.id).mkdir(parents=True, exist_ok=True)
    assert cli_main(["--runs-dir", str(tmp_path), "stop", run.id]) == 0
    assert "not running" in capsys.readouterr().out
    assert cli_main(["--runs-dir", str(tmp_path), "resume", "done"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    cut = store.create_run({}, {}, name="cut", status="stopped")
    store.run_dir(cut.id).mkdir(parents=True, exist_ok=True)
    assert cli_main(["--runs-dir", str(tmp_path), "resume", "cut"]) == 1
    assert "no complete checkpoint" in capsys.readouterr().err
    assert cli_main(["--runs-dir", str(tmp_path), "stop", "nope"]) == 4  # exits.NOT_FOUND


def test_plateau_cuts_lr_after_patience_evals():
    cfg = load_config(
        DEMO,
        sets=[
            "scheduler.name=plateau",
            "scheduler.plateau_patience=1",
            "scheduler.plateau_factor=0.5",
            "scheduler.warmup_ratio=0",
        ],
    ).config
    lrc = LRControl(cfg, 1e-3, 100, 0)
    cuts = [lrc.plateau_update(v, "min", 1e-4) for v in (3.0, 2.5, 2.6, 2.6, 2.4, 2.5, 2.5)]
    assert cuts == [False, False, False, True, False, False, True]
    assert lrc.lr(50) == pytest.approx(2.5e-4)


def test_head_lr_goes_to_the_classification_head_only():
    from tuitrain.train.optim import param_groups

    cfg = parse(
        {
            "model": {
                "task": "seq-cls",
                "tokenizer": "bytes",
                "arch": {"type": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2},
            },
            "data": {"train_file": str(REPO / "configs" / "data" / "reviews.jsonl")},
            "optimizer": {"lr": 1e-5, "head_lr": 5e-4},
        }
    )
    model = build_model(cfg, ByteTokenizer())
    groups = param_groups(cfg, model, 1e-5)
    head = {id(p) for g in groups if g["is_head"] for p in g["params"]}
    assert head == {id(p) for n, p in model.named_parameters() if n.startswith("classifier.")}
    assert {g["lr"] for g in groups if g["is_head"]} == {5e-4} and {
        g["lr"] for g in groups if not g["is_head"]
    } == {1e-5}
    assert all(g["weight_decay"] == 0.0 for g in groups if all(p.ndim < 2 for p in g["params"]))


def test_steering_module_stays_torch_free():
    import subprocess
    import sys

    code = "import sys, tuitrain.steering; print(sorted(m for m in ('torch', 'accelerate', 'transformers', 'textual') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_head_lr_follows_batch_lr_scaling_like_lr():
    from tuitrain.config.derived import compute
    from tuitrain.train.optim import param_groups

    cfg = parse(
        {
            "model": {
                "task": "seq-cls",
                "tokenizer": "bytes",
                "arch": {"type": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2},
            },
            "data": {"train_file": str(REPO / "configs" / "data" / "reviews.jsonl")},
            "optimizer": {"lr": 1e-5, "head_lr": 5e-4},
            "batch": {"size": 8, "grad_accum": 4, "lr_scaling": "linear", "reference_batch": 8},
        }
    )
    base = compute(cfg).scaled_lr
    assert base == pytest.approx(4e-5)  # effective batch 32 = 4 x the reference
    groups = param_groups(cfg, build_model(cfg, ByteTokenizer()), base)
    assert {round(g["lr"], 12) for g in groups if g["is_head"]} == {2e-3}
    assert {round(g["lr"], 12) for g in groups if not g["is_head"]} == {4e-5}


def test_dtype_auto_keeps_float32_master_weights_of_a_bf16_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM, GPT2Config

    small = GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64, vocab_size=259)
    AutoModelForCausalLM.from_config(small).to(torch.bfloat16).save_pretrained(tmp_path / "m")
    for dtype, want in (("auto", torch.float32), ("bfloat16", torch.bfloat16)):
        # The pydantic model alone (no cross-field rules): a bf16 checkpoint without tokenizer files.
        cfg = TrainConfig.model_validate(
            {"model": {"name_or_path": str(tmp_path / "m"), "tokenizer": "bytes", "dtype": dtype}}
        )
        model = build_model(cfg, ByteTokenizer())
        assert {p.dtype for p in model.parameters()} == {want}, dtype


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"step": 5}, "exactly one action"),
        ({"step": 5, "scale_lr": 0.5, "stop": True}, "exactly one action"),
        ({"step": 5, "set_lr": -1}, "greater than 0"),
        ({"step": -1, "stop": True}, "greater than or equal to 0"),
        ({"step": 5, "dance": True}, "dance"),
    ],
)
def test_steering_schedule_is_validated_by_field(entry, message):
    from tuitrain.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        load_config(DEMO, sets=[f"steering.schedule=[{json.dumps(entry)}]"])
    assert "steering.schedule.0" in str(exc.value) and message in str(exc.value), str(exc.value)
    ok = load_config(DEMO, sets=['steering.schedule=[{"step": 812, "scale_lr": 0.5}]']).config
    assert ok.steering.schedule[0].action == ("scale_lr", 0.5)


def test_branch_refuses_edits_the_checkpoint_cannot_take_by_field():
    from tuitrain.runs.lineage import incompatible

    base = load_config(DEMO).config.model_dump()
    for sets, field in (
        (["model.arch.num_layers=4"], "model.arch.num_layers"),
        (["peft.method=lora"], "peft.method"),
        (["optimizer.name=sgd"], "optimizer.name"),
        (["batch.size=4"], "batch.size"),
    ):
        edited = load_config(DEMO, sets=sets).config.model_dump()
        (msg,) = incompatible(base, edited)
        assert msg.startswith(f"{field}: ")
    fine = ["optimizer.lr=1e-4", "training.max_steps=900", "batch.grad_accum=2",
            "model.gradient_checkpointing=true", "scheduler.name=constant"]  # fmt: skip
    assert incompatible(base, load_config(DEMO, sets=fine).config.model_dump()) == []
