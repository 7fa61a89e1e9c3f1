"""Provides TuiTrainCallback: report an HF Trainer run to the tuitrain store and obey its steering.

    trainer = Trainer(..., callbacks=[TuiTrainCallback(runs_dir="runs", name="my-run")])

Rank 0 registers the run, logs every `on_log` dict and claims commands; every rank applies each
command after the same optimizer step (tuitrain.steering.SteeringPoller). LR commands
become a multiplier wrapped around the scheduler's LambdaLR lambdas, so the rest of the schedule
keeps its shape; the multiplier is a plain float in TrainerState (stateful callback), so it is
restored from checkpoints that HF/Accelerate load with weights_only. Never imports Textual.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState

from tuitrain.client import lifecycle
from tuitrain.client.core import RunClient, install_sigterm, poller_for
from tuitrain.client.lr import LambdaLRSteer
from tuitrain.steering.poller import SteeringPoller
from tuitrain.steering.protocol import LR_KINDS, SIGTERM_KIND, SteerCommand

# Logged once at the end of train(); they describe the whole run, so they go to the summary.
SUMMARY_KEYS = {
    "train_runtime": "wall_time_s",
    "train_samples_per_second": "samples_per_s",
    "train_steps_per_second": "steps_per_s",
    "train_loss": "train_loss",
    "total_flos": "total_flos",
}
RENAMES = {"learning_rate": "lr"}
# Filled in by TrainingArguments.__post_init__ or secret: never recorded.
SKIP_ARGS = frozenset({"hub_token", "accelerator_config", "logging_dir"})
# Always recorded (and compared across runs), even when left at HF's default.
KEY_ARGS = frozenset(
    {"learning_rate", "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size",
     "gradient_accumulation_steps", "num_train_epochs", "max_steps", "weight_decay", "max_grad_norm",
     "optim", "seed", "bf16", "fp16"}
)  # fmt: skip
# eval_* keys that are timings, not quality metrics: no val_* twin for these.
EVAL_TIMING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def metric_rows(logs: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Split one on_log dict into (metrics for the store, summary values); eval_X also gives val_X."""
    metrics: dict[str, float] = {}
    summary: dict[str, float] = {}
    for key, value in logs.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue  # HF logs only numbers; anything else is not a chartable metric
        if key in SUMMARY_KEYS:
            summary[SUMMARY_KEYS[key]] = v
            continue
        metrics[RENAMES.get(key, key)] = v
        if key.startswith("eval_") and not key.endswith(EVAL_TIMING_SUFFIXES):
            # The TUI charts val_*; HF's own name is kept too, so users find what they logged.
            metrics["val_" + key[len("eval_") :]] = v
    return metrics, summary


class TuiTrainCallback(TrainerCallback, ExportableState):
    """Report an HF Trainer run to `<runs_dir>/tuitrain.db` and obey stop / LR / checkpoint / eval."""

    def __init__(
        self,
        runs_dir: str | os.PathLike[str] = "runs",
        name: str | None = None,
        config: dict[str, Any] | None = None,
        poll_interval: float = 0.25,
        resume_run: bool = True,
    ) -> None:
        # No side effects here: Trainer re-creates stateful callbacks from state()["args"] when
        # restore_callback_states_from_checkpoint is set. The run is registered in on_train_begin.
        self.runs_dir = str(runs_dir)
        self.name = name
        self.config = config
        self.poll_interval = poll_interval
        self.resume_run = resume_run
        self.lr_multiplier = 1.0
        self.run_id: str | None = None
        self.finished = True  # no run until on_train_begin
        self._client: RunClient | None = None
        self._writer: Any = None  # the client's writer
        self._poller: SteeringPoller | None = None
        self._lr: LambdaLRSteer | None = None
        self._stop_status: str | None = None
        self._sigterm = threading.Event()
        self._undo_sigterm: Any = None  # puts the previous SIGTERM handler back
        self._best: tuple[float, int] | None = None
        self._summary: dict[str, float] = {}
        self._causal = False
        self._last_val: float | None = None
        self._last_log: tuple[float, int] | None = None
        self._eff_batch = 1
        self._started = 0.0

    # -- ExportableState: plain numbers and strings only (weights_only-safe, JSON in trainer_state) --

    def state(self) -> dict:
        """What a checkpoint keeps of this callback: the LR multiplier and the run id."""
        return {
            "args": {
                "runs_dir": self.runs_dir,
                "name": self.name,
                "poll_interval": self.poll_interval,
                "resume_run": self.resume_run,
            },
            "attributes": {"lr_multiplier": float(self.lr_multiplier), "run_id": self.run_id},
        }

    def _restore(self, state: TrainerState) -> None:
        # On resume TrainerState comes from the checkpoint's trainer_state.json; on a fresh run it
        # holds our own initial state(), so reading it is always safe.
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        attrs = (saved or {}).get("attributes", {})
        self.lr_multiplier = float(attrs.get("lr_multiplier", self.lr_multiplier))
        self.run_id = attrs.get("run_id") or self.run_id

    # -- lifecycle -------------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Register (or re-attach to) the run on rank 0, wrap the LR schedule on every rank."""
        if not self.finished:  # e.g. in a notebook: the last train() raised, so no on_train_end
            self.finish("failed", reason="train() ended without on_train_end (an exception?)")
        resumed = state.global_step > 0
        if resumed:
            self._restore(state)
        else:  # a fresh train(), even with a reused callback: a new run at multiplier 1
            self.lr_multiplier, self.run_id = 1.0, None
        self._started = time.time()
        self._stop_status = None
        self._best = self._last_val = self._last_log = None
        self._summary = {}
        model_cls = type(kw.get("model")).__name__
        self._causal = model_cls.endswith(("ForCausalLM", "LMHeadModel"))  # perplexity = exp(loss)
        self._eff_batch = (
            args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        )
        if state.is_world_process_zero:
            self._register(args, state, kw.get("model"), resumed)
            self._install_sigterm()
        client = self._client if state.is_world_process_zero else None
        self._poller = poller_for(client, args.process_index, args.world_size, self.poll_interval)
        try:  # rebuilt for every train(); wraps the schedule with the (restored) multiplier
            self._lr = LambdaLRSteer(kw.get("lr_scheduler"), self.lr_multiplier)
        except TypeError:
            self._lr = None

    def _register(
        self, args: TrainingArguments, state: TrainerState, model: Any, resumed: bool
    ) -> None:
        config = self.config if self.config is not None else _auto_config(args, model)
        self._client = RunClient.register(
            self.runs_dir,
            config,
            _derived(args, state, self._eff_batch),
            self.name,
            f"HF Trainer, {args.world_size} process(es)",
            resume_id=self.run_id if resumed and self.resume_run else None,
            resumed=resumed,
            step=state.global_step,
            data={"lr_multiplier": self.lr_multiplier},
        )
        self.run_id = self._client.run_id
        self._writer = self._client.writer
        self.finished = False
        lifecycle.track(self)

    def _install_sigterm(self) -> None:
        # SIGTERM (e.g. `tuitrain stop`) becomes a stop at the next step on every rank, with a
        # checkpoint; only when nobody else handles it and we are on the main thread.
        self._sigterm.clear()
        self._undo_sigterm = install_sigterm(lambda *_: self._sigterm.set())

    def _restore_sigterm(self) -> None:
        if self._undo_sigterm is not None:
            self._undo_sigterm()
            self._undo_sigterm = None

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Write what is queued and set the final status (completed, early_stopped or stopped)."""
        self._restore_sigterm()
        if self.finished:
            return
        status, reason = self._stop_status, None
        if status is not None:  # the trainer's wording: a stop command is "user"
            reason = "user" if status == "early_stopped" else "SIGTERM"
        else:
            # Another callback (e.g. EarlyStoppingCallback) ended training before max_steps.
            early = control.should_training_stop and 0 < state.global_step < state.max_steps
            status = "early_stopped" if early else "completed"
            reason = "stopped by another callback" if early else None
        self.finish(status, reason=reason, step=state.global_step)

    def finish(self, status: str, *, reason: str | None = None, step: int | None = None) -> None:
        """End the run record (called by on_train_end, or at exit if training died)."""
        if self.finished or self.run_id is None:
            return
        self.finished = True
        summary: dict[str, Any] = {"wall_time_s": round(time.time() - self._started, 3)}
        if step is not None:
            summary["steps"] = step
        if self._last_val is not None:
            summary["final_val_loss"] = self._last_val
        if self._best is not None:
            summary.update(
                best_metric="val_loss",
                best_value=self._best[0],
                best_step=self._best[1],
                best_val_loss=self._best[0],
            )
        summary.update(self._summary)
        self._client.finish(status, reason, summary, step=step)
        self._client.store.close()

    # -- metrics ---------------------------------------------------------------------------

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **kw: Any,
    ) -> None:
        """Queue this log dict (rank 0): learning_rate -> lr, eval_X also as val_X."""
        if not state.is_world_process_zero or self.run_id is None or not logs:
            return
        metrics, summary = metric_rows(logs)
        step = state.global_step
        now = time.monotonic()
        if "loss" in metrics and self._last_log is not None and step > self._last_log[1]:
            dt = now - self._last_log[0]
            if dt > 0:
                metrics["samples_per_s"] = (step - self._last_log[1]) * self._eff_batch / dt
        if "loss" in metrics:
            self._last_log = (now, step)
        val = metrics.get("val_loss")
        if val is not None and self._causal and "val_perplexity" not in metrics:
            metrics["val_perplexity"] = math.exp(val) if val < 700 else math.inf
        if val is not None and math.isfinite(val):
            self._last_val = val
            if self._best is None or val < self._best[0]:
                self._best = (val, step)
            if not self.finished:
                vals = {k: v for k, v in metrics.items() if k.startswith("val_")}
                self._writer.event("eval", f"eval at step {step}: val_loss {val:.4g}", step, vals)
        if summary:
            self._summary = {**self._summary, **summary}
        if self.finished:
            self._log_after_finish(step, metrics)
        elif metrics:
            self._writer.log(step, metrics)

    def _log_after_finish(self, step: int, metrics: dict[str, float]) -> None:
        # `trainer.evaluate()` after train(): the writer is closed, so write these few rows
        # directly and keep the summary's final_val_loss in step with them.
        from tuitrain.store import Store

        with Store(self.runs_dir) as store:
            now = time.time()
            store.log_metrics(self.run_id, [(step, k, v, now) for k, v in metrics.items()])
            if "val_loss" in metrics:
                store.add_event(
                    self.run_id,
                    "eval",
                    f"eval after training: val_loss {metrics['val_loss']:.4g}",
                    step,
                )
                store.update_run(self.run_id, summary={"final_val_loss": metrics["val_loss"]})

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Add a checkpoint event with the checkpoint's folder."""
        if state.is_world_process_zero and self._writer is not None:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self._writer.event(
                "checkpoint",
                f"checkpoint saved at step {state.global_step}",
                state.global_step,
                {"path": str(path)},
            )

    # -- steering --------------------------------------------------------------------------

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        """Apply the commands due after this optimizer step; every rank gets the same list."""
        if self._poller is None:
            return control
        step = state.global_step
        for cmd in self._poller.poll(step, stop_requested=self._sigterm.is_set()):
            reason = self._apply(cmd, args, step, control)
            if reason:
                self._poller.reject(cmd, reason, step)
        return control

    def _apply(
        self, cmd: SteerCommand, args: TrainingArguments, step: int, control: TrainerControl
    ) -> str | None:
        """Apply one command; returns the reason when it is rejected."""
        if cmd.kind in ("stop", SIGTERM_KIND):
            control.should_training_stop = True
            control.should_save = True  # the stop leaves a checkpoint to resume from
            self._stop_status = "early_stopped" if cmd.kind == "stop" else "stopped"
            self._poller.ack(cmd, step, f"stop after step {step} (checkpoint saved)")
            if cmd.kind == SIGTERM_KIND and self._writer is not None:
                self._writer.event("warning", f"SIGTERM: stopping after step {step}", step)
            return None
        if cmd.kind == "checkpoint":
            control.should_save = True
            self._poller.ack(cmd, step, f"checkpoint at step {step}")
            return None
        if cmd.kind == "eval":
            if str(getattr(args.eval_strategy, "value", args.eval_strategy)) == "no":
                return "this Trainer has eval_strategy='no'; pass an eval_dataset and set eval_strategy='steps' to evaluate on command"
            control.should_evaluate = True
            self._poller.ack(cmd, step, f"evaluation at step {step}")
            return None
        if cmd.kind in LR_KINDS:
            return self._steer_lr(cmd, step)
        return f"unknown command {cmd.kind!r}"

    def _steer_lr(self, cmd: SteerCommand, step: int) -> str | None:
        if self._lr is None:
            return "the scheduler is not a LambdaLR (e.g. reduce_lr_on_plateau): LR steering is not available for it"
        try:
            lr = self._lr.apply(cmd.kind, float(cmd.value or 0.0))
        except ValueError as exc:
            return str(exc)
        self.lr_multiplier = m = self._lr.multiplier
        self._poller.ack(cmd, step, f"lr {lr:.4g} (multiplier {m:.4g}) from step {step + 1}")
        if self._writer is not None:
            msg = f"lr multiplier {m:.4g} by command {cmd.id}: lr {lr:.4g} from step {step + 1}"
            self._writer.event("lr", msg, step, {"multiplier": m, "lr": lr, "command_id": cmd.id})
        return None


def _training_args(args: TrainingArguments) -> dict[str, Any]:
    """The key hyperparameters plus every other argument changed from its default (not all ~150)."""
    full = args.to_sanitized_dict()
    keep = {}
    for f in dataclasses.fields(args):
        if f.name not in full or f.name in SKIP_ARGS:
            continue
        changed = f.default is not dataclasses.MISSING and _plain(getattr(args, f.name)) != _plain(
            f.default
        )
        if f.name in KEY_ARGS or changed:
            keep[f.name] = full[f.name]
    return dict(sorted(keep.items()))


def _plain(value: Any) -> Any:
    # Enums compare by value; HF's __post_init__ turns some None defaults into empty containers.
    value = getattr(value, "value", value)
    return None if value in ("", [], {}) else value


def _auto_config(args: TrainingArguments, model: Any) -> dict[str, Any]:
    """The run record's config when the user gives none: the TrainingArguments and the model's identity."""
    cfg: dict[str, Any] = {"training_args": _training_args(args)}
    mcfg = getattr(model, "config", None)
    if mcfg is not None:
        cfg["model"] = {
            "name_or_path": getattr(mcfg, "_name_or_path", "") or "",
            "model_type": getattr(mcfg, "model_type", "") or "",
            "parameters": int(sum(p.numel() for p in model.parameters()))
            if hasattr(model, "parameters")
            else None,
        }
    return cfg


def _derived(args: TrainingArguments, state: TrainerState, eff_batch: int) -> dict[str, Any]:
    """The values the TUI shows for progress (total steps) and the run table."""
    total = state.max_steps or None
    warm = args.get_warmup_steps(total) if total else None
    return {
        "source": "hf",
        "num_processes": args.world_size,
        "effective_batch": eff_batch,
        "scaled_lr": args.learning_rate,
        "total_steps": total,
        "warmup_steps": warm,
        "steps_per_epoch": None,
        "train_samples": None,
    }
