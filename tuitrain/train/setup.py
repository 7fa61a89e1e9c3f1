"""Provides the trainer's setup: data, model, optimizer, LR control, metric buffer, steering and
the doctor (build), and where the first step starts from (start: a fresh run, a verified
checkpoint when resuming, or a parent's checkpoint when branching)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitrain.client.core import poller_for
from tuitrain.config.derived import compute
from tuitrain.config.rules import monitor_mode
from tuitrain.runs.checkpoints import CheckpointError
from tuitrain.runs.lineage import BranchPlan, read_plan
from tuitrain.steering.poller import SteeringPoller
from tuitrain.telemetry.flops import FlopsModel
from tuitrain.train import checkpoint as ckpt
from tuitrain.train import sft
from tuitrain.train.data import BatchPlan, EpochLoader, build_splits
from tuitrain.train.early_stop import EarlyStop
from tuitrain.train.hooks import RunHook
from tuitrain.train.metrics import MetricBuffer, StepTimer
from tuitrain.train.model import SetupError, build_model, count_params
from tuitrain.train.nodes import NodeSystem, node_index
from tuitrain.train.optim import LRControl, build_optimizer
from tuitrain.train.steer import Steering, scheduled_commands
from tuitrain.train.tokenizer import build_tokenizer


class TrainState:
    """Loop position and early-stopping memory; plain numbers, saved as JSON with checkpoints."""

    def __init__(self) -> None:
        self.step = 0  # completed optimizer steps
        self.epoch = 0
        self.batch = 0  # micro batches consumed in this epoch
        self.best_value = math.nan
        self.best_step = -1
        self.bad_evals = 0
        # Summary values that span the whole timeline, so a resumed run reports the same ones.
        self.best_val_loss = math.inf
        self.final_val_loss = math.nan

    def state_dict(self) -> dict:
        """Plain numbers only."""
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict saved."""
        for k, v in state.items():
            setattr(self, k, type(getattr(self, k))(v))


@dataclass
class Parts:
    """Everything the loop trains with (the Trainer takes these as its attributes)."""

    tok: Any
    splits: Any
    model: Any
    opt: Any
    params: list
    total: int  # optimizer steps this run trains
    warmup: int
    base_lr: float
    hook: RunHook
    flops: FlopsModel
    timer: StepTimer
    lrc: LRControl
    state: TrainState
    stateful: dict  # what a checkpoint saves besides Accelerate's state (JSON)
    early: EarlyStop
    keep_best: bool
    plan: BatchPlan
    loader: EpochLoader
    buf: MetricBuffer
    nodes: NodeSystem | None
    poller: SteeringPoller
    steering: Steering
    doctor: Any
    packing_note: str | None


def hook_for(cfg) -> RunHook:
    """The run kind's hook: an LR range test (run.kind lr_find) or a plain training run."""
    if cfg.run.kind == "lr_find":
        from tuitrain.train.range_test import RangeTest

        return RangeTest(cfg)
    return RunHook()


def build(run_dir: Path, cfg, acc, report) -> Parts:
    """Data, model, optimizer and the loop's helpers, on every rank."""
    from accelerate.utils import set_seed

    from tuitrain.doctor.watch import trainer_watch

    world, rank = acc.num_processes, acc.process_index
    if cfg.run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it
    set_seed(cfg.run.seed, deterministic=cfg.run.deterministic)
    tok = build_tokenizer(cfg)
    splits = build_splits(cfg, tok, cache_dir=run_dir.parent / "data-cache")
    model = build_model(cfg, tok, splits.label_names)
    packing_note = sft.check_packing(cfg, model, splits)  # before any step: fail early
    launch = cfg.launch.model_copy(update={"num_processes": world})
    d = compute(cfg.model_copy(update={"launch": launch}), len(splits.train))
    derived = d.as_dict()
    hook = hook_for(cfg)
    total = hook.plan(d.total_steps, derived)
    report.update(derived=derived)
    opt = build_optimizer(cfg, model, d.scaled_lr)
    model, opt = acc.prepare(model, opt)
    lrc = LRControl(cfg, d.scaled_lr, total, d.warmup_steps or 0)
    hook.install(lrc)
    state = TrainState()
    es = cfg.early_stopping
    # Best weights cost a full copy of the trainable weights per improving eval: only when used
    # (the doctor's stop_on_overfit restores them too).
    keep_best = cfg.training.save_best or (es.enabled and es.restore_best)
    keep_best = hook.evals_and_saves and (keep_best or "stop_on_overfit" in cfg.doctor.auto)
    plan = BatchPlan(len(splits.train), cfg.batch.size, rank, world, cfg.run.seed)
    loader = EpochLoader(splits.train, plan, cfg.data.num_workers, acc.device.type == "cuda")
    buf = MetricBuffer(hook.log_every or cfg.training.log_every, acc.device, world, acc.reduce)
    # Multi-node: local rank 0 of each other node samples its machine (sys/node{K}_...); one
    # all-gather per log window brings the samples to rank 0, the only writer.
    nodes = None
    if cfg.launch.num_machines > 1 and world > 1 and hook.node_sampling:
        from accelerate.utils import gather_object

        node = node_index(rank)
        sampling = node > 0 and acc.is_local_main_process
        nodes = NodeSystem(node, sampling, gather_object, run_dir.parent)
    poller = poller_for(report.client, rank, world)  # rank 0 claims through the run client
    # rank 0: diagnoses at flush; an automatic remedy wakes the poller, so it applies next step
    doctor = trainer_watch(run_dir, cfg, report, on_command=poller.wake)
    return Parts(
        tok=tok,
        splits=splits,
        model=model,
        opt=opt,
        params=[p for p in model.parameters() if p.requires_grad],
        total=total,
        warmup=d.warmup_steps or 0,
        base_lr=d.scaled_lr,
        hook=hook,
        flops=FlopsModel(model, cfg.training.mixed_precision, acc.device, world),
        timer=StepTimer(acc.device),
        lrc=lrc,
        state=state,
        stateful={"lr": lrc, "loop": state},  # this order: old checkpoints' custom_checkpoint_{i}
        early=EarlyStop(es.monitor, monitor_mode(cfg), es.min_delta, es.patience, es.enabled),
        keep_best=keep_best,
        plan=plan,
        loader=loader,
        buf=buf,
        nodes=nodes,
        poller=poller,
        steering=Steering(poller, scheduled_commands(cfg), lrc, report, hook, rank),
        doctor=doctor,
        packing_note=packing_note,
    )


def start(tr, resume: bool) -> None:
    """Record the start, then restore a checkpoint (resume) or a parent's (branch), if any."""
    cfg, acc, report = tr.cfg, tr.acc, tr.report
    trainable, total = count_params(tr.model)
    report.started()
    info: dict = {"perf": tr.flops.as_dict(cfg.data.max_seq_length), "data": tr.splits.summary}
    if tr.flops.note:
        info["mfu_note"] = tr.flops.note  # said once, where `show` and the summary look
    report.update(summary=info)
    report.event("data", *tr.splits.summary_event())  # counts in the event's data
    notes = tr.splits.notes + ([("data", tr.packing_note)] if tr.packing_note else [])
    for kind, msg in notes:
        report.event(kind, msg, 0)
    if resume:
        resume_from_checkpoint(tr)
        return
    n_val = len(tr.splits.val) if tr.splits.val is not None else 0
    msg = f"{tr.total} steps on {tr.world} process(es), {len(tr.splits.train)} train / {n_val} val examples, {trainable:,} of {total:,} params trainable"
    data = {"trainable_params": trainable, "total_params": total, "device": str(acc.device)}
    report.event("started", msg, 0, data)
    if tr.splits.val is None:
        report.event(
            "warning",
            "no validation data: no val metrics, early stopping or plateau cuts (set data.validation_split > 0 or data.validation_file)",
            0,
        )
    plan = read_plan(tr.run_dir)
    if plan is not None:
        start_from_branch(tr, plan)


def resume_from_checkpoint(tr) -> None:
    """Load the newest checkpoint that matches its manifest; damaged newer ones are named in a
    warning event, and none usable is a SetupError listing them."""
    try:
        path, notes = ckpt.resume_point(tr.acc, tr.run_dir)
    except CheckpointError as exc:
        raise SetupError(f"nothing to resume: {exc}") from None
    for note in notes:
        tr.report.event("warning", note, None)
    ckpt.load(tr.acc, path, tr.stateful)
    st = tr.state
    tr.last_save = st.step
    # Best weights written after this checkpoint belong to the abandoned timeline.
    ckpt.prune_best(tr.acc, tr.run_dir, st.best_step, upto=st.step)
    tr.report.event(
        "resumed",
        f"resumed from {path.name} (step {st.step}, LR multiplier {tr.lrc.multiplier:g})",
        st.step,
    )


def start_from_branch(tr, plan: BranchPlan) -> None:
    """Continue from the parent's checkpoint under this (edited) config; or, weights only,
    start a fresh optimizer, schedule and data order from the parent's weights."""
    acc, st = tr.acc, tr.state
    src = Path(plan.checkpoint)
    if not (src / ckpt.DONE_MARK).is_file():
        raise SetupError(
            f"branch: the parent's checkpoint {src} is gone or incomplete (branch from another step)"
        )
    if plan.weights_only:
        loaded, total, skipped = ckpt.load_weights(acc, tr.model, src)
        msg = (
            f"branched from run {plan.parent} at step {plan.fork_step}, weights only: {loaded} of "
            f"{total} tensors loaded"
            + (f" ({len(skipped)} skipped: {', '.join(skipped[:3])}...)" if skipped else "")
            + "; fresh optimizer, schedule and data order from step 0"
        )
    else:
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in tr.opt.param_groups]
        ckpt.load(acc, src, tr.stateful)
        # The optimizer's state_dict brings the parent's hyperparameters (lr, betas, weight
        # decay, base_lr); the child's edited config wins, the moment estimates stay.
        for g, mine in zip(tr.opt.param_groups, fresh, strict=True):
            g.update(mine)
        if st.step >= tr.total:
            raise SetupError(
                f"training.max_steps ({tr.total}) must be beyond the fork step {st.step} "
                f"(set training.max_steps > {st.step})"
            )
        if tr.keep_best and st.best_step >= 0:
            ckpt.copy_best(acc, Path(plan.parent_dir), tr.run_dir, st.best_step)
        msg = (
            f"branched from run {plan.parent} at step {st.step} ({src.name}, LR multiplier "
            f"{tr.lrc.multiplier:g}); logging from step {st.step + 1}"
        )
        if plan.rewarm_steps > 0 and plan.parent_lr:
            # The LR would jump at the fork: start at the parent's and ramp to this schedule.
            target = tr.lrc.lr(st.step)
            tr.lrc.start_rewarm(st.step, plan.rewarm_steps, plan.parent_lr)
            msg += (
                f"; re-warm from the parent's lr {plan.parent_lr:.3g} to this schedule's "
                f"{target:.3g} over {plan.rewarm_steps} steps"
            )
    tr.report.event(
        "branched",
        msg,
        st.step,
        {
            "parent": plan.parent,
            "fork_step": plan.fork_step,
            "weights_only": plan.weights_only,
            "rewarm_steps": plan.rewarm_steps,
            "parent_lr": plan.parent_lr,
        },
    )
