"""Provides the training loop run by `accelerate launch -m tuitrain.train RUN_DIR`.

Reads runs/<id>/config.yaml, trains with gradient accumulation counted per optimizer step, logs
metrics in batches (one host sync per `training.log_every` steps), evaluates, checkpoints, obeys
steering commands at the same step on every rank, and ends with a terminal status in the store.
Each log window also stores where the step time went (data wait, compute, tuitrain's overhead),
tokens/s and MFU (tuitrain.telemetry.perf), measured without a sync of their own.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch

from tuitrain.config import load_config
from tuitrain.config.derived import compute
from tuitrain.config.errors import ConfigError
from tuitrain.config.rules import monitor_mode
from tuitrain.data.sources import DataError
from tuitrain.doctor.watch import trainer_watch
from tuitrain.lrfind.curve import Smoother, ramp_lr, suggest
from tuitrain.runs.lineage import BranchPlan, read_plan
from tuitrain.steering import SIGTERM_KIND, SteerCommand, SteeringPoller, StoreSource
from tuitrain.telemetry import perf
from tuitrain.train import checkpoint as ckpt
from tuitrain.train import sft
from tuitrain.train.data import BatchPlan, EpochLoader, build_splits
from tuitrain.train.evaluate import evaluate, generate
from tuitrain.train.metrics import MetricBuffer, StepTimer, first_nonfinite
from tuitrain.train.model import SetupError, build_model, count_params
from tuitrain.train.tokenizer import build_tokenizer
from tuitrain.train.nodes import NodeSystem, node_index
from tuitrain.train.optim import LRControl, build_optimizer
from tuitrain.train.report import Reporter

DIVERGED_REMEDY = (
    "clip gradients (training.max_grad_norm 0.5-1.0) and lower the LR (optimizer.lr, e.g. halve it)"
)
OOM_ADVICE = "out of memory: lower batch.size and raise batch.grad_accum to keep the effective batch (or enable model.gradient_checkpointing)"


def matmul_params(model) -> tuple[int, int]:
    """(all, trainable) weights that multiply activations: every parameter but the embedding
    lookups (an input embedding tied to the output head counts once, as the head); 4-bit
    weights count their unpacked size."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_w = getattr(head, "weight", None)
    lookups = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and m.weight is not head_w
    }
    n = trainable = 0
    for prm in model.parameters():
        if id(prm) in lookups:
            continue
        # bitsandbytes packs two 4-bit weights per uint8 element.
        k = prm.numel() * (2 if prm.dtype == torch.uint8 and hasattr(prm, "quant_state") else 1)
        n += k
        trainable += k if prm.requires_grad else 0
    return n, trainable


def mfu_precision(mixed: str, model) -> str:
    """The matmul precision the peak is read at: the autocast dtype, else the weights' dtype
    (fp32 runs on TF32 tensor cores only where PyTorch was told to allow it)."""
    if mixed in ("bf16", "fp16"):
        return mixed
    dtypes = [prm.dtype for prm in model.parameters() if prm.is_floating_point()]
    main = max(set(dtypes), key=dtypes.count) if dtypes else torch.float32
    if main in (torch.bfloat16, torch.float16):
        return "bf16" if main == torch.bfloat16 else "fp16"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


class FlopsModel:
    """What MFU needs about this run: FLOPs per token at a sequence length and the peak."""

    def __init__(self, model, mixed: str, device, world: int):
        inner = getattr(model, "module", model)  # DDP wraps the model
        n, trainable = matmul_params(inner)
        c = getattr(inner, "config", None)
        self.layers = int(getattr(c, "num_hidden_layers", 0) or 0)
        self.heads = int(getattr(c, "num_attention_heads", 0) or 0)
        hidden = int(getattr(c, "hidden_size", 0) or 0)
        self.head_dim = int(
            getattr(c, "head_dim", 0) or (hidden // self.heads if self.heads else 0)
        )
        self.n, self.trainable, self.world = n, trainable, world
        self.precision = mfu_precision(mixed, inner)
        self.device = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        self.peak = perf.peak_flops(self.device, self.precision) if device.type == "cuda" else None
        self.note = (
            None if self.peak is not None else perf.unknown_peak_note(self.device, self.precision)
        )

    def per_token(self, seq_len: float) -> float:
        """Training FLOPs per token at this (token-weighted mean) sequence length."""
        return perf.flops_per_token(
            self.n, self.layers, self.heads, self.head_dim, seq_len, self.trainable
        )

    def mfu(self, tokens_per_s: float, seq_len: float) -> float | None:
        """MFU of all ranks together, None where the peak is unknown."""
        if self.peak is None:
            return None
        return perf.mfu(tokens_per_s, self.per_token(seq_len), self.peak, self.world)

    def as_dict(self, seq_len: int) -> dict:
        """The run summary's `perf` entry."""
        return {
            "device": self.device,
            "precision": self.precision,
            "matmul_params": self.n,
            "flops_per_token": self.per_token(seq_len),
            "seq_len": seq_len,
            "peak_flops": self.peak,
        }


def loss_terms(batch: dict, causal: bool) -> int:
    """How many terms the model's mean loss averages over: shifted target tokens, or examples."""
    labels = batch["labels"]
    if not causal:
        return len(labels)
    return int((labels[:, 1:] != -100).sum())


class TrainState:
    """Loop position and early-stopping memory; plain numbers, so Accelerate can checkpoint it."""

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
        """Plain numbers only (loaded back with weights_only)."""
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict saved."""
        for k, v in state.items():
            setattr(self, k, type(getattr(self, k))(v))


class Trainer:
    """One training run inside the launched process (any rank)."""

    def __init__(self, run_dir: Path, cfg, accelerator, report: Reporter, sigterm: list[bool]):
        self.run_dir, self.cfg, self.acc, self.report, self.sigterm = (
            run_dir,
            cfg,
            accelerator,
            report,
            sigterm,
        )
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.outcome: tuple[str, str | None] | None = None
        self.last_eval = self.last_save = -1
        self.summary: dict = {}

    # ---- setup -------------------------------------------------------------------------
    def setup(self, resume: bool) -> None:
        """Data, model, optimizer, LR control; restores a checkpoint when resuming."""
        from accelerate.utils import set_seed

        cfg, acc = self.cfg, self.acc
        if cfg.run.deterministic:
            os.environ.setdefault(
                "CUBLAS_WORKSPACE_CONFIG", ":4096:8"
            )  # cuBLAS needs it to be deterministic
        set_seed(cfg.run.seed, deterministic=cfg.run.deterministic)
        self.tok = build_tokenizer(cfg)
        self.splits = build_splits(cfg, self.tok, cache_dir=self.run_dir.parent / "data-cache")
        model = build_model(cfg, self.tok, self.splits.label_names)
        packing_note = sft.check_packing(cfg, model, self.splits)  # before any step: fail early
        launch = cfg.launch.model_copy(update={"num_processes": self.world})
        d = compute(cfg.model_copy(update={"launch": launch}), len(self.splits.train))
        self.total, self.warmup, self.base_lr = d.total_steps, d.warmup_steps or 0, d.scaled_lr
        derived = d.as_dict()
        # An LR range test (run.kind lr_find) is this loop with the LR ramped through LRControl.
        lf = cfg.lr_find
        self.probe = Smoother(stop_factor=lf.stop_factor) if cfg.run.kind == "lr_find" else None
        self.probe_points: list[tuple[float, float]] = []
        if self.probe is not None:
            derived.update(full_total_steps=self.total, total_steps=lf.steps)
            self.total = lf.steps
        self.report.update(derived=derived)
        opt = build_optimizer(cfg, model, self.base_lr)
        self.model, self.opt = acc.prepare(model, opt)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.flops = FlopsModel(self.model, cfg.training.mixed_precision, acc.device, self.world)
        self.timer = StepTimer(acc.device)
        self.lrc = LRControl(cfg, self.base_lr, self.total, self.warmup)
        if self.probe is not None:
            self.lrc.ramp = lambda step: ramp_lr(step, lf.min_lr, lf.max_lr, lf.steps)
        self.state = TrainState()
        acc.register_for_checkpointing(self.lrc, self.state)
        es = cfg.early_stopping
        # Best weights cost a full copy of the trainable weights per improving eval: only when used.
        self.keep_best = cfg.training.save_best or (es.enabled and es.restore_best)
        self.keep_best = self.keep_best or "stop_on_overfit" in cfg.doctor.auto  # it restores best
        self.plan = BatchPlan(
            len(self.splits.train), cfg.batch.size, self.rank, self.world, cfg.run.seed
        )
        self.loader = EpochLoader(
            self.splits.train, self.plan, cfg.data.num_workers, acc.device.type == "cuda"
        )
        # A range test checks its stop rule on every step's loss: one host sync per step there.
        every = 1 if self.probe is not None else cfg.training.log_every
        self.buf = MetricBuffer(every, acc.device, self.world, acc.reduce)
        # Multi-node: local rank 0 of each other node samples its machine (sys/node{K}_...); one
        # all-gather per log window brings the samples to rank 0, the only writer.
        self.nodes: NodeSystem | None = None
        if cfg.launch.num_machines > 1 and self.world > 1 and self.probe is None:
            from accelerate.utils import gather_object

            node = node_index(self.rank)
            sampling = node > 0 and acc.is_local_main_process
            self.nodes = NodeSystem(node, sampling, gather_object, self.run_dir.parent)
        self.poller = SteeringPoller(
            StoreSource(self.run_dir.parent, self.run_dir.name) if self.report.active else None,
            rank=self.rank,
            world=self.world,
        )
        # rank 0: diagnoses at flush; an automatic remedy wakes the poller, so it applies next step
        self.doctor = trainer_watch(self.run_dir, cfg, self.report, on_command=self.poller.wake)
        # steering.schedule: every rank knows it, so each applies it at the same step, no collective.
        self.scheduled: dict[int, list[SteerCommand]] = {}
        for entry in cfg.steering.schedule:
            kind, value = entry.action
            self.scheduled.setdefault(entry.step, []).append(
                SteerCommand(None, kind, value, {"source": "schedule"})
            )
        trainable, total = count_params(self.model)
        self.report.started()
        info: dict = {"perf": self.flops.as_dict(cfg.data.max_seq_length)}
        if self.flops.note:
            info["mfu_note"] = self.flops.note  # said once, where `show` and the summary look
        self.report.update(summary=info)
        for kind, msg in self.splits.notes + ([("data", packing_note)] if packing_note else []):
            self.report.event(kind, msg, 0)
        if resume:
            last = ckpt.last_checkpoint(self.run_dir)
            if last is None:
                raise SetupError(
                    f"nothing to resume: no complete checkpoint in {ckpt.ckpt_root(self.run_dir)} (start a new run)"
                )
            acc.load_state(str(last))
            self.last_save = self.state.step
            # Best weights written after this checkpoint belong to the abandoned timeline.
            ckpt.prune_best(acc, self.run_dir, self.state.best_step, upto=self.state.step)
            self.report.event(
                "resumed",
                f"resumed from {last.name} (step {self.state.step}, LR multiplier {self.lrc.multiplier:g})",
                self.state.step,
            )
        else:
            n_val = len(self.splits.val) if self.splits.val is not None else 0
            msg = f"{self.total} steps on {self.world} process(es), {len(self.splits.train)} train / {n_val} val examples, {trainable:,} of {total:,} params trainable"
            self.report.event(
                "started",
                msg,
                0,
                {"trainable_params": trainable, "total_params": total, "device": str(acc.device)},
            )
            if self.splits.val is None:
                self.report.event(
                    "warning",
                    "no validation data: no val metrics, early stopping or plateau cuts (set data.validation_split > 0 or data.validation_file)",
                    0,
                )
            plan = read_plan(self.run_dir)
            if plan is not None:
                self.start_from_branch(plan)

    def start_from_branch(self, plan: BranchPlan) -> None:
        """Continue from the parent's checkpoint under this (edited) config; or, weights only,
        start a fresh optimizer, schedule and data order from the parent's weights."""
        acc, st = self.acc, self.state
        src = Path(plan.checkpoint)
        if not (src / ckpt.DONE_MARK).is_file():
            raise SetupError(
                f"branch: the parent's checkpoint {src} is gone or incomplete (branch from another step)"
            )
        if plan.weights_only:
            loaded, total, skipped = ckpt.load_weights(acc, self.model, src)
            msg = (
                f"branched from run {plan.parent} at step {plan.fork_step}, weights only: {loaded} of "
                f"{total} tensors loaded"
                + (f" ({len(skipped)} skipped: {', '.join(skipped[:3])}...)" if skipped else "")
                + "; fresh optimizer, schedule and data order from step 0"
            )
        else:
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.opt.param_groups]
            acc.load_state(str(src))
            # The optimizer's state_dict brings the parent's hyperparameters (lr, betas, weight
            # decay, base_lr); the child's edited config wins, the moment estimates stay.
            for g, mine in zip(self.opt.param_groups, fresh, strict=True):
                g.update(mine)
            if st.step >= self.total:
                raise SetupError(
                    f"training.max_steps ({self.total}) must be beyond the fork step {st.step} "
                    f"(set training.max_steps > {st.step})"
                )
            if self.keep_best and st.best_step >= 0:
                ckpt.copy_best(acc, Path(plan.parent_dir), self.run_dir, st.best_step)
            msg = (
                f"branched from run {plan.parent} at step {st.step} ({src.name}, LR multiplier "
                f"{self.lrc.multiplier:g}); logging from step {st.step + 1}"
            )
        self.report.event(
            "branched",
            msg,
            st.step,
            {"parent": plan.parent, "fork_step": plan.fork_step, "weights_only": plan.weights_only},
        )

    # ---- the loop ----------------------------------------------------------------------
    def run(self) -> tuple[str, str | None]:
        """Train until done, stopped, early-stopped or diverged; returns (status, reason)."""
        cfg, acc, st = self.cfg, self.acc, self.state
        ga, nb = cfg.batch.grad_accum, self.plan.num_batches
        max_norm = cfg.training.max_grad_norm or math.inf  # inf: measure the norm, never clip
        device, timer = acc.device, self.timer
        # A KV cache is useless while training and costs a concat per layer per forward.
        causal = cfg.model.task == "causal-lm"
        fwd = {"use_cache": False} if causal else {}
        self.model.train()
        while st.step < self.total and self.outcome is None:
            if st.batch >= nb:
                st.epoch, st.batch = st.epoch + 1, 0
            t0 = time.perf_counter()
            batches = self.loader.epoch(st.epoch, skip=st.batch)
            timer.data += time.perf_counter() - t0  # starting an epoch's loader is data time
            while st.batch < nb and st.step < self.total and self.outcome is None:
                k = min(ga, nb - st.batch)  # a last partial cycle of the epoch still steps
                t0 = time.perf_counter()
                cycle = [next(batches) for _ in range(k)]
                # Each micro batch's mean loss is weighted by its share of the cycle's loss terms
                # (target tokens / examples), so k micro batches of n equal one batch of k*n
                # even when padding makes their token counts differ. CPU tensors: no device sync.
                counts = [loss_terms(c, causal) for c in cycle]
                total_terms = max(1, sum(counts))
                samples = tokens = span = 0
                for cpu in cycle:
                    samples += len(cpu["input_ids"])
                    n_tok = (
                        int(cpu["attention_mask"].sum())
                        if "attention_mask" in cpu
                        else cpu["input_ids"].numel()
                    )
                    tokens += n_tok
                    span += n_tok * cpu["input_ids"].shape[-1]  # MFU's attention term
                t1 = time.perf_counter()
                timer.data += t1 - t0  # host time blocked on (and counting) the next batches
                timer.begin()
                lr = self.lrc.apply(self.opt, st.step)
                loss_sum = torch.zeros((), device=device)
                for i, cpu in enumerate(cycle):
                    b = {key: v.to(device, non_blocking=True) for key, v in cpu.items()}
                    # Only the last micro batch of a cycle all-reduces gradients across ranks.
                    sync = (
                        nullcontext() if i == k - 1 or self.world == 1 else acc.no_sync(self.model)
                    )
                    with sync:
                        loss = self.model(**b, **fwd).loss * (counts[i] / total_terms)
                        acc.backward(loss)
                    loss_sum += loss.detach()
                st.batch += k
                norm = acc.clip_grad_norm_(self.params, max_norm)
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                timer.end()
                t2 = time.perf_counter()
                timer.compute += t2 - t1  # on CUDA the events' device time replaces it
                st.step += 1
                ep = st.epoch + st.batch / nb
                self.buf.add(st.step, loss_sum, norm, lr, ep, samples, tokens, span)
                timer.overhead += time.perf_counter() - t2  # flush and steering time themselves
                if self.buf.full():
                    self.flush()
                if self.outcome is None:
                    self.after_step(epoch_end=st.batch >= nb)
        return self.finish()

    def after_step(self, epoch_end: bool) -> None:
        """Steering commands, then the eval / checkpoint cadence."""
        t0 = time.perf_counter()
        t, step = self.cfg.training, self.state.step
        do_eval = (step % t.eval_every == 0) if t.eval_every else epoch_end
        do_save = (step % t.save_every == 0) if t.save_every else do_eval
        for cmd in self.scheduled.get(step, []) + self.poller.poll(step, self.sigterm[0]):
            by = "schedule" if cmd.payload.get("source") == "schedule" else f"command {cmd.id}"
            if cmd.kind in ("set_lr", "scale_lr") and self.probe is not None:
                self.poller.reject(cmd, "a range test ramps the LR itself", step)
                continue
            if cmd.kind in ("set_lr", "scale_lr"):
                old = self.lrc.lr(step)
                try:
                    self.lrc.set_lr(cmd.value, step) if cmd.kind == "set_lr" else self.lrc.scale_lr(
                        cmd.value
                    )
                except ValueError as exc:
                    self.poller.reject(cmd, str(exc), step)
                    continue
                new = self.lrc.lr(step)
                msg = f"lr {old:.3g} -> {new:.3g} from step {step + 1} (multiplier {self.lrc.multiplier:.4g})"
                self.poller.ack(cmd, step, msg)
                self.report.event(
                    "lr",
                    f"{cmd.kind} by {by}: {msg}",
                    step,
                    {"command_id": cmd.id, "lr": new, "multiplier": self.lrc.multiplier},
                )
            elif cmd.kind == "stop":
                self.outcome = (
                    "early_stopped",
                    "user" if cmd.id is not None else f"{by}: stop at step {step}",
                )
                self.restore_best = bool(cmd.payload.get("restore_best"))  # the doctor's stop
                do_eval = do_save = True
                self.poller.ack(cmd, step, "stopping: evaluate, save, end as early_stopped")
            elif cmd.kind == SIGTERM_KIND:
                self.outcome = ("stopped", "SIGTERM")
                do_save = True
            elif cmd.kind == "eval":
                do_eval = True
                self.poller.ack(cmd, step, "evaluating now")
            elif cmd.kind == "checkpoint":
                do_save = True
                self.poller.ack(cmd, step, "checkpointing now")
            print(
                f"[rank {self.rank}] step {step}: applied {cmd.kind}"
                + (f" {cmd.value:g}" if cmd.value is not None else ""),
                flush=True,
            )
        self.timer.overhead += time.perf_counter() - t0  # steering; evals and saves are not steps
        if self.probe is not None:
            return  # a range test is a probe: no eval, no checkpoint
        if do_eval:
            self.evaluate()
        if do_save and (self.outcome is None or self.outcome[0] in ("early_stopped", "stopped")):
            self.checkpoint()

    # ---- reporting, eval, checkpoints --------------------------------------------------
    def flush(self) -> None:
        """Move buffered step metrics to the host (one sync), log them, stop on a non-finite loss."""
        t0 = time.perf_counter()
        try:
            self._flush()
        finally:
            # Overhead is tuitrain's own time: not the wait for the device inside the drain.
            self.timer.overhead += max(0.0, time.perf_counter() - t0 - self.buf.sync_s)

    def _flush(self) -> None:
        rows, rates = self.buf.drain()
        if not rows:
            return
        # Read after the drain's sync: the CUDA events are done, so timing costs no sync.
        window = self.timer.window(len(rows), self.buf.sync_s)
        mfu = self.flops.mfu(rates["tokens_per_s"], self.buf.window_span)
        if mfu is not None:
            window["mfu"] = mfu
        bad = first_nonfinite(rows)
        mem = None
        if self.acc.device.type == "cuda":  # allocator counters: host-side, no sync
            mem = {
                "gpu_mem_alloc_gb": torch.cuda.memory_allocated() / 1e9,
                "gpu_mem_peak_gb": torch.cuda.max_memory_allocated() / 1e9,
            }
        for r in rows:
            if bad is not None and r.step > bad.step:
                break
            values = {
                "loss": r.loss,
                "lr": r.lr,
                "grad_norm": r.grad_norm,
                "epoch": r.epoch,
                **rates,
            }
            if mem is not None:
                values.update(mem)
            if r is rows[-1]:
                values.update(window)  # the window's means, at its log step
            self.report.log(r.step, values)
        last = rows[-1]
        if self.nodes is not None:  # every rank, at the same step: the all-gather
            others = self.nodes.exchange()
            if others:
                self.report.log(last.step, others)
        if self.report.active:
            print(
                f"step {last.step}/{self.total} loss {last.loss:.4f} lr {last.lr:.3g} grad_norm {last.grad_norm:.3g} {rates['samples_per_s']:.1f} samples/s",
                flush=True,
            )
        if self.doctor is not None:
            self.doctor.tick(last.step)
        if self.probe is not None:
            # Every rank sees the same reduced losses, so every rank stops at the same step.
            for r in rows:
                self.probe_points.append((r.lr, r.loss))
                self.probe.add(r.lr, r.loss)
                if self.probe.stop_reason and self.outcome is None:
                    self.outcome = ("completed", f"range test ended: {self.probe.stop_reason}")
                    break
            return
        if bad is not None:
            self.outcome = (
                "diverged",
                f"loss became {bad.loss} at step {bad.step}: {DIVERGED_REMEDY}",
            )
            self.report.event(
                "diverged",
                self.outcome[1],
                bad.step,
                {"loss": str(bad.loss), "grad_norm": bad.grad_norm, "lr": bad.lr},
            )

    def evaluate(self) -> None:
        """Validation metrics, best tracking, early stopping, plateau cuts and sample generations."""
        with self.report.phase("eval"):
            self._evaluate()

    def _evaluate(self) -> None:
        self.flush()
        st, es = self.state, self.cfg.early_stopping
        if (self.outcome and self.outcome[0] == "diverged") or self.last_eval == st.step:
            return
        self.last_eval = st.step
        if self.splits.val is None:
            return
        res = evaluate(self.acc, self.model, self.splits.val, self.cfg)
        if not res:
            return
        self.report.log(st.step, res)
        self.report.event("eval", " ".join(f"{k} {v:.4g}" for k, v in res.items()), st.step, res)
        st.final_val_loss = res["val_loss"]
        st.best_val_loss = min(res["val_loss"], st.best_val_loss)
        if not math.isfinite(res["val_loss"]):
            self.outcome = (
                "diverged",
                f"val_loss became {res['val_loss']} at step {st.step}: {DIVERGED_REMEDY}",
            )
            self.report.event("diverged", self.outcome[1], st.step)
            return
        value, mode = res.get(es.monitor, res["val_loss"]), monitor_mode(self.cfg)
        delta = es.min_delta
        better = math.isnan(st.best_value) or (
            value < st.best_value - delta if mode == "min" else value > st.best_value + delta
        )
        if better:
            st.best_value, st.best_step, st.bad_evals = value, st.step, 0
            if self.keep_best:
                ckpt.save_best(self.acc, self.model, self.run_dir, st.step, es.monitor, value)
                ckpt.prune_best(self.acc, self.run_dir, st.step)
        else:
            st.bad_evals += 1
            if es.enabled and st.bad_evals >= es.patience and self.outcome is None:
                self.outcome = (
                    "early_stopped",
                    f"patience: no {es.monitor} improvement > {delta:g} in {es.patience} evaluations",
                )
                self.report.event(
                    "early_stop",
                    self.outcome[1],
                    st.step,
                    {"best_step": st.best_step, "best_value": st.best_value},
                )
        if self.lrc.plateau_update(value, mode, delta):
            self.report.event(
                "lr",
                f"plateau: lr cut to {self.lrc.lr(st.step):.3g} ({es.monitor} stalled)",
                st.step,
                {"lr": self.lrc.lr(st.step)},
            )
        for prompt, text in generate(self.acc, self.model, self.tok, self.cfg, self.splits):
            line = " ".join(f"{prompt} -> {text}".split())  # one line in the events pane
            self.report.event("generation", line, st.step, {"prompt": prompt, "text": text})
        self.buf.reset_clock()

    def checkpoint(self) -> None:
        """Save the training state now (never after a non-finite loss: the last good one stays)."""
        self.flush()
        st = self.state
        if (self.outcome and self.outcome[0] == "diverged") or self.last_save == st.step:
            return
        self.report.sync()  # the store holds every step up to the checkpoint before it exists
        with self.report.phase("save"):
            d = ckpt.save(
                self.acc,
                self.model,
                self.run_dir,
                st.step,
                self.cfg.training.save_total_limit,
                {"epoch": st.epoch, "best_step": st.best_step},
            )
        if self.keep_best:
            ckpt.prune_best(self.acc, self.run_dir, st.best_step)
        self.last_save = st.step
        self.report.event("checkpoint", f"saved {d.name}", st.step, {"path": str(d)})
        self.buf.reset_clock()

    def finish(self) -> tuple[str, str | None]:
        """Final eval and checkpoint, best-weight restore and export; returns (status, reason)."""
        if self.probe is not None:  # a probe: no eval, no checkpoint, no export
            self.flush()
            sug = suggest(self.probe_points, pretrained=bool(self.cfg.model.name_or_path))
            self.summary["lr_find"] = {k: v for k, v in sug.as_json().items() if k != "points"}
            return self.outcome or ("completed", f"range test ran its {self.total} steps")
        status, reason = self.outcome or ("completed", None)
        if status != "diverged":
            self.flush()
            status, reason = self.outcome or ("completed", None)
        if status in ("completed", "early_stopped"):
            self.evaluate()
            self.checkpoint()
            es = self.cfg.early_stopping
            restore = (es.enabled and es.restore_best) or getattr(self, "restore_best", False)
            if restore and self.state.best_step >= 0:
                info = ckpt.load_best(self.acc, self.model, self.run_dir, self.state.best_step)
                if info is None:
                    self.report.event(
                        "warning",
                        f"best weights of step {self.state.best_step} are missing; keeping the last weights",
                        self.state.step,
                    )
                else:
                    self.report.event(
                        "checkpoint",
                        f"restored best weights from step {info['step']} ({info['metric']} {info['value']:.4g})",
                        self.state.step,
                    )
            final = ckpt.export_final(self.acc, self.model, self.tok, self.run_dir)
            if final is not None:
                self.report.event("checkpoint", f"exported {final}", self.state.step)
        elif status == "stopped":
            self.checkpoint()
        if self.doctor is not None:
            self.doctor.final(self.state.step)
        return status, reason


def _summary(tr: Trainer | None, t0: float) -> dict:
    if tr is None or not hasattr(tr, "state"):
        return {"wall_time_s": time.time() - t0}
    st = tr.state
    out = {"steps": st.step, "total_steps": tr.total, "wall_time_s": time.time() - t0, **tr.summary}
    if math.isfinite(st.best_val_loss):
        out.update(best_val_loss=st.best_val_loss, final_val_loss=st.final_val_loss)
    if st.best_step >= 0:
        out.update(
            best_metric=tr.cfg.early_stopping.monitor,
            best_value=st.best_value,
            best_step=st.best_step,
        )
    buf, timer = getattr(tr, "buf", None), getattr(tr, "timer", None)
    if buf is not None and timer is not None and buf.total_tokens:
        # Training time only (evals and checkpoints excluded), over this process's steps.
        rate = buf.total_tokens / max(buf.total_s, 1e-9)
        out["tokens_per_s"] = rate
        mfu = tr.flops.mfu(rate, buf.total_span / buf.total_tokens)
        if mfu is not None:
            out["mfu"] = mfu
        out["time"] = timer.run_means()
    return out


def train(run_dir: str | Path, resume: bool = False, sigterm: list[bool] | None = None) -> int:
    """Train the run in RUN_DIR; the exit code is 0 unless the run failed. `sigterm`: the flag
    SIGTERM sets (a lane driver passes its own, to see that it was asked to stop)."""
    run_dir = Path(run_dir).resolve()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped SSH session must not end training
    sigterm = [False] if sigterm is None else sigterm

    def on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
        sigterm[0] = True  # acted on after the current step, so the checkpoint is consistent

    signal.signal(signal.SIGTERM, on_sigterm)
    rank0 = os.environ.get("RANK", "0") == "0"
    report = Reporter(run_dir, active=rank0)
    tr: Trainer | None = None
    t0 = time.time()
    status, reason = "failed", None
    try:
        from accelerate import Accelerator

        cfg = load_config(run_dir / "config.yaml").config
        acc = Accelerator(mixed_precision=cfg.training.mixed_precision, cpu=cfg.launch.cpu)
        tr = Trainer(run_dir, cfg, acc, report, sigterm)
        tr.setup(resume)
        status, reason = tr.run()
    except torch.cuda.OutOfMemoryError:
        reason = OOM_ADVICE
        traceback.print_exc()
    except (ConfigError, DataError, SetupError) as exc:
        reason = str(exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()  # the traceback goes to train.log; the store gets the message
    if status == "failed":
        report.event(
            "error",
            reason or "failed",
            tr.state.step if tr is not None and hasattr(tr, "state") else None,
        )
    if tr is not None and getattr(tr, "nodes", None) is not None:
        tr.nodes.close()
    try:
        report.finish(status, reason, _summary(tr, t0))
    finally:
        report.close()
    return 1 if status == "failed" else 0
