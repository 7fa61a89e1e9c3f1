"""Provides the training loop run by `accelerate launch -m tuitrain.train RUN_DIR [--resume]`.

Reads runs/<id>/config.yaml, builds everything (tuitrain.train.setup), trains with gradient
accumulation counted per optimizer step, evaluates, checkpoints, applies steering commands at the
same step on every rank (tuitrain.train.steer), and ends with a terminal status in the store.
Each log window also stores where the step time went (data wait, compute, tuitrain's overhead),
tokens/s and MFU (tuitrain.telemetry), measured without a sync of their own.

Host syncs (the GPU waits for nothing else): one per `training.log_every` steps, where flush()
drains the buffered metrics (with N ranks that drain is an all-reduce, plus an all-gather of the
other nodes' system samples on multi-node runs). With N ranks the steering poll adds a broadcast
about every 0.25 s (SteeringPoller turns 0.25 s into a step interval from the measured step
time, so every rank meets it at the same step); a single process polls with a clock read and no
collective. Evaluations and checkpoints sync too, between steps. An LR range test (its hook,
tuitrain.train.range_test.RangeTest) reads every step's loss: one sync per step there.
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
from tuitrain.config.errors import ConfigError
from tuitrain.data.sources import DataError
from tuitrain.train import checkpoint as ckpt
from tuitrain.train import setup
from tuitrain.train.evaluate import evaluate
from tuitrain.train.generate import generate
from tuitrain.train.metrics import first_nonfinite
from tuitrain.train.model import SetupError
from tuitrain.train.report import Reporter

DIVERGED_REMEDY = (
    "clip gradients (training.max_grad_norm 0.5-1.0) and lower the LR (optimizer.lr, e.g. halve it)"
)
OOM_ADVICE = "out of memory: lower batch.size and raise batch.grad_accum to keep the effective batch (or enable model.gradient_checkpointing)"
# A divergence is the truth about the weights and replaces any other end; SIGTERM's stop is the
# user's last word and replaces a stop of the same step; otherwise the first end stands.
OUTCOME_RANK = {"diverged": 2, "stopped": 1}


def loss_terms(batch: dict, causal: bool) -> int:
    """How many terms the model's mean loss averages over: shifted target tokens, or examples."""
    labels = batch["labels"]
    if not causal:
        return len(labels)
    return int((labels[:, 1:] != -100).sum())


class Trainer:
    """One training run inside the launched process (any rank)."""

    def __init__(self, run_dir: Path, cfg, accelerator, report: Reporter, sigterm: list[bool]):
        self.run_dir, self.cfg, self.acc = run_dir, cfg, accelerator
        self.report, self.sigterm = report, sigterm
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.outcome: tuple[str, str | None] | None = None  # set by end() only
        self.restore_best = False  # the doctor's stop ends on the best weights
        self.last_eval = self.last_save = -1
        self.summary: dict = {}

    def setup(self, resume: bool) -> None:
        """Build everything (tuitrain.train.setup), then start fresh, resume or branch."""
        vars(self).update(vars(setup.build(self.run_dir, self.cfg, self.acc, self.report)))
        setup.start(self, resume)

    def end(self, status: str, reason: str | None) -> None:
        """The run ends after this step with `status` (the one place the outcome is set)."""
        if self.outcome is None or OUTCOME_RANK.get(status, 0) > OUTCOME_RANK.get(
            self.outcome[0], 0
        ):
            self.outcome = (status, reason)

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
                norm = acc.clip_grad_norm_(self.params, max_norm)  # a device tensor: no sync
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                timer.end()
                t2 = time.perf_counter()
                timer.compute += t2 - t1  # on CUDA the events' device time replaces it
                st.step += 1
                ep = st.epoch + st.batch / nb
                self.buf.add(st.step, loss_sum, norm, lr, ep, samples, tokens, span)  # no sync
                timer.overhead += time.perf_counter() - t2  # flush and steering time themselves
                if self.buf.full():
                    self.flush()  # HOST SYNC: once per log window
                if self.outcome is None:
                    self.after_step(epoch_end=st.batch >= nb)
        return self.finish()

    def after_step(self, epoch_end: bool) -> None:
        """Steering commands, then the eval / checkpoint cadence."""
        t0 = time.perf_counter()
        t, step = self.cfg.training, self.state.step
        do_eval = (step % t.eval_every == 0) if t.eval_every else epoch_end
        do_save = (step % t.save_every == 0) if t.save_every else do_eval
        # With N ranks: HOST SYNC every `sync_every` steps (the steering broadcast, ~0.25 s apart).
        got = self.steering.after(step, self.sigterm[0])
        if got.end is not None:
            self.end(*got.end)
            self.restore_best = self.restore_best or got.restore_best
        do_eval, do_save = do_eval or got.eval, do_save or got.save
        self.timer.overhead += time.perf_counter() - t0  # steering; evals and saves are not steps
        if not self.hook.evals_and_saves:
            return
        if do_eval:
            self.evaluate()
        if do_save and (self.outcome is None or self.outcome[0] in ("early_stopped", "stopped")):
            self.checkpoint()

    # ---- reporting, eval, checkpoints --------------------------------------------------
    def flush(self) -> None:
        """Move buffered step metrics to the host (the sync), log them, stop on a non-finite loss."""
        t0 = time.perf_counter()
        try:
            self._flush()
        finally:
            # Overhead is tuitrain's own time: not the wait for the device inside the drain.
            self.timer.overhead += max(0.0, time.perf_counter() - t0 - self.buf.sync_s)

    def _flush(self) -> None:
        rows, rates = self.buf.drain()  # HOST SYNC (with N ranks: the all-reduce of the window)
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
        stop = self.hook.observe(rows)  # a range test's stop rule
        if stop is not None:
            self.end("completed", stop)
        if bad is not None and self.hook.diverges:
            reason = f"loss became {bad.loss} at step {bad.step}: {DIVERGED_REMEDY}"
            self.end("diverged", reason)
            data = {"loss": str(bad.loss), "grad_norm": bad.grad_norm, "lr": bad.lr}
            self.report.event("diverged", reason, bad.step, data)

    def evaluate(self) -> None:
        """Validation metrics, best tracking, early stopping, plateau cuts and sample generations."""
        with self.report.phase("eval"):
            self._evaluate()

    def _evaluate(self) -> None:
        self.flush()
        st, es = self.state, self.early
        if (self.outcome and self.outcome[0] == "diverged") or self.last_eval == st.step:
            return
        self.last_eval = st.step
        if self.splits.val is None:
            return
        res = evaluate(self.acc, self.model, self.splits.val, self.cfg)  # HOST SYNC: the eval
        if not res:
            return
        self.report.log(st.step, res)
        self.report.event("eval", " ".join(f"{k} {v:.4g}" for k, v in res.items()), st.step, res)
        st.final_val_loss = res["val_loss"]
        st.best_val_loss = min(res["val_loss"], st.best_val_loss)
        if not math.isfinite(res["val_loss"]):
            reason = f"val_loss became {res['val_loss']} at step {st.step}: {DIVERGED_REMEDY}"
            self.end("diverged", reason)
            self.report.event("diverged", reason, st.step)
            return
        value = res.get(es.monitor, res["val_loss"])
        verdict = es.judge(st, value, st.step)
        if verdict == "improved" and self.keep_best:
            ckpt.save_best(self.acc, self.model, self.run_dir, st.step, es.monitor, value)
            ckpt.prune_best(self.acc, self.run_dir, st.step)
        elif verdict == "stop" and self.outcome is None:
            self.end("early_stopped", es.reason())
            data = {"best_step": st.best_step, "best_value": st.best_value}
            self.report.event("early_stop", es.reason(), st.step, data)
        if self.lrc.plateau_update(value, es.mode, es.min_delta):
            lr = self.lrc.lr(st.step)
            msg = f"plateau: lr cut to {lr:.3g} ({es.monitor} stalled)"
            self.report.event("lr", msg, st.step, {"lr": lr})
        samples = generate(self.acc, self.model, self.tok, self.cfg, self.splits)
        if samples:
            self.report.samples(st.step, samples)  # rows, samples/* metrics, generation events
        self.buf.reset_clock()

    def checkpoint(self) -> None:
        """Save the training state now (never after a non-finite loss: the last good one stays)."""
        self.flush()
        st = self.state
        if (self.outcome and self.outcome[0] == "diverged") or self.last_save == st.step:
            return
        self.report.sync()  # the store holds every step up to the checkpoint before it exists
        info = {"epoch": st.epoch, "best_step": st.best_step}
        limit = self.cfg.training.save_total_limit
        with self.report.phase("save"):
            d = ckpt.save(self.acc, self.model, self.run_dir, st.step, limit, info, self.stateful)
        if self.keep_best:
            ckpt.prune_best(self.acc, self.run_dir, st.best_step)
        self.last_save = st.step
        self.report.event("checkpoint", f"saved {d.name}", st.step, {"path": str(d)})
        self.buf.reset_clock()

    def finish(self) -> tuple[str, str | None]:
        """Final eval and checkpoint, best-weight restore and export; returns (status, reason)."""
        if self.outcome is None or self.outcome[0] != "diverged":
            self.flush()  # the last partial window
        if not self.hook.evals_and_saves:  # a range test: its summary, no eval or export
            summary, (status, reason) = self.hook.finish(self.total, self.outcome)
            self.summary.update(summary)
            return status, reason
        status, reason = self.outcome or ("completed", None)
        if status in ("completed", "early_stopped"):
            self.evaluate()
            self.checkpoint()
            self.restore_best_weights()
            final = ckpt.export_final(self.acc, self.model, self.tok, self.run_dir)
            if final is not None:
                self.report.event("checkpoint", f"exported {final}", self.state.step)
        elif status == "stopped":
            self.checkpoint()
        if self.doctor is not None:
            self.doctor.final(self.state.step)
        return status, reason

    def restore_best_weights(self) -> None:
        """End on the best evaluation's weights when early stopping (or the doctor's stop) asks."""
        es, st = self.cfg.early_stopping, self.state
        if not ((es.enabled and es.restore_best) or self.restore_best) or st.best_step < 0:
            return
        info = ckpt.load_best(self.acc, self.model, self.run_dir, st.best_step)
        if info is None:
            msg = f"best weights of step {st.best_step} are missing; keeping the last weights"
            self.report.event("warning", msg, st.step)
        else:
            msg = f"restored best weights from step {info['step']} ({info['metric']} {info['value']:.4g})"
            self.report.event("checkpoint", msg, st.step)


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
    except (ConfigError, DataError, SetupError, ckpt.CheckpointLoadError) as exc:
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
