"""Provides the custom-loop API: `tuitrain.init()` -> Run with log(), poll(), ack(), reject(), finish().

A run made here is a first-class run in the store: the TUI lists it, charts it and can send it
steering commands, which the loop receives from `poll()` and applies itself. Logging goes through
the store's batched RunWriter, so `log()` never waits on SQLite; `poll()` reads the database at
most every `poll_interval` seconds (the trainer's own SteeringPoller). Torch is never imported.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuitrain.client import lifecycle
from tuitrain.client.core import RunClient, install_sigterm, poller_for
from tuitrain.client.lr import LambdaLRSteer
from tuitrain.steering.protocol import LR_KINDS, SIGTERM_KIND, SteerCommand
from tuitrain.telemetry.sysinfo import DEFAULT_INTERVAL_S

__all__ = ["Run", "SteerCommand", "init"]

POLL_INTERVAL_S = 0.25
# Statuses a script may end a run with (crashed is for runs that vanish, queued for the launcher).
FINISH_STATUSES = ("completed", "early_stopped", "stopped", "failed", "diverged", "pruned")


class Run:
    """A run reported from the current process; create it with `tuitrain.init()`."""

    def __init__(
        self,
        runs_dir: str | os.PathLike[str] = "runs",
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        derived: Mapping[str, Any] | None = None,
        poll_interval: float = POLL_INTERVAL_S,
        flush_interval: float = 0.5,
        rank: int | None = None,
        world: int | None = None,
        announce: bool = True,
        system_interval: float | None = DEFAULT_INTERVAL_S,
    ) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(
                f"config must be a dict of plain values, got {type(config).__name__};"
                " pass e.g. config={'lr': 3e-4, 'batch_size': 32}"
            )
        if not poll_interval >= 0:
            raise ValueError(f"poll_interval must be >= 0 seconds, got {poll_interval!r}")
        self.runs_dir = Path(runs_dir)
        found_rank, found_world = _rank_world()
        self.rank = found_rank if rank is None else rank
        self.world = found_world if world is None else world
        broadcast = _broadcast if self.world > 1 else None
        self._client: RunClient | None = None
        ident: list[Any] = [None]
        if self.rank == 0:  # only rank 0 touches the store; the others learn the id from it
            derived = {"source": "api", "num_processes": self.world, **dict(derived or {})}
            # sys/ metrics (GPU, CPU, RAM, disk) sampled by the writer's thread, as in the trainer.
            self._client = c = RunClient.register(
                self.runs_dir,
                dict(config or {}),
                derived,
                name,
                "tuitrain.init",
                flush_interval=flush_interval,
                system_interval=system_interval,
            )
            ident = [(c.run_id, c.name, str(c.run_dir))]
        if broadcast is not None and announce:
            broadcast(ident)  # every rank calls init(): the first collective
        # announce=False: each rank makes its Run when it likes, with no collective (e.g. an
        # Accelerate tracker registered on the main process only); ranks > 0 then poll and apply
        # commands without knowing the run's id, name or dir (None there).
        known = ident[0] is not None
        self.id: str = ident[0][0] if known else None  # type: ignore[assignment]
        self.name: str = ident[0][1] if known else None  # type: ignore[assignment]
        self.dir: Path = Path(ident[0][2]) if known else None  # type: ignore[assignment]
        self._poller = poller_for(self._client, self.rank, self.world, poll_interval, broadcast)
        self._lr: LambdaLRSteer | None = None
        self._step = 0
        self._started = time.time()
        self.finished = False
        self.status = "running"
        self.exit_status: str | None = None
        self.exit_reason: str | None = None
        self._polled = False
        self._sigterm = False
        self._restore_sigterm = install_sigterm(self._on_sigterm)
        if self.rank == 0:
            lifecycle.track(self)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # A loop that polls gets SIGTERM (e.g. `tuitrain stop`) as a stop command and can save
        # first; one that never polls exits now, and the run ends `stopped` rather than crashed.
        if self._polled and not self.finished and not self._sigterm:
            self._sigterm = True
            return
        self.exit_status, self.exit_reason = "stopped", "SIGTERM"
        raise SystemExit(128 + signum)

    @property
    def step(self) -> int:
        """The highest step logged so far (0 before the first log)."""
        return self._step

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Queue metrics for `step` (default: the last step + 1); returns without touching SQLite.

        Values are numbers or 0-d tensors; a tensor is converted by the writer's thread, so the
        loop does not wait for the GPU here."""
        if self.finished:
            raise RuntimeError(
                f"run {self.name!r} has finished; call tuitrain.init() for a new run"
            )
        if step is None:
            step = self._step + 1
        elif isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int (the optimizer step), got {step!r}")
        values: dict[str, Any] = {}
        for key, value in metrics.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"metric names must be non-empty strings, got {key!r}")
            values[key] = _number(key, value)
        self._step = max(self._step, step)
        if values and self._client is not None:  # None off rank 0: one rank reports
            self._client.log(step, values)

    def event(
        self,
        kind: str,
        message: str,
        step: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Add an entry to the run's timeline (e.g. kind 'checkpoint', 'eval' or 'warning')."""
        if self._client is None:
            return
        self._client.event(
            kind, message, self._step if step is None else step, dict(data) if data else None
        )

    def steer_lr(self, scheduler: Any, multiplier: float = 1.0) -> None:
        """Let poll() apply set_lr / scale_lr to this LambdaLR itself (as a multiplier on its
        schedule) and acknowledge them; pass the saved `lr_multiplier` when resuming."""
        self._lr = LambdaLRSteer(scheduler, multiplier)

    @property
    def lr_multiplier(self) -> float:
        """The steering multiplier on the schedule attached with steer_lr() (save it in checkpoints)."""
        return self._lr.multiplier if self._lr is not None else 1.0

    def poll(self, step: int | None = None) -> list[SteerCommand]:
        """Commands sent since the last poll, validated (malformed ones are rejected, not returned).

        Cheap enough to call every step: one clock read, and a DB query every poll_interval s.
        For each command the loop calls ack() once applied, or reject() with a reason. With
        steer_lr(scheduler), LR commands are applied and acknowledged here and not returned.
        SIGTERM arrives here as a `stop` command with id None (ack() is then a no-op); the run's
        status at exit is then `stopped` unless finish() is given another one."""
        if self.finished:
            return []
        step = self._step if step is None else step
        self._polled = True
        cmds = self._poller.poll(step, stop_requested=self._sigterm)
        if any(c.kind == SIGTERM_KIND for c in cmds):  # rank 0's SIGTERM, on every rank
            self.exit_status, self.exit_reason = "stopped", "SIGTERM"
            stop = SteerCommand(None, "stop", payload={"reason": "SIGTERM"})
            cmds = [stop if c.kind == SIGTERM_KIND else c for c in cmds]
            self._sigterm = False  # delivered once; a second SIGTERM exits at once
            self._polled = False
        if self._lr is None or not cmds:
            return cmds
        rest = []
        for cmd in cmds:
            if cmd.kind not in LR_KINDS:
                rest.append(cmd)
                continue
            try:
                lr = self._lr.apply(cmd.kind, float(cmd.value or 0.0))
            except ValueError as exc:
                self.reject(cmd, str(exc), step)
                continue
            m = self._lr.multiplier
            self.ack(cmd, step, f"lr {lr:.4g} (multiplier {m:.4g}) from step {step + 1}")
            self.event(
                "lr",
                f"lr multiplier {m:.4g} by command {cmd.id}: lr {lr:.4g}",
                step,
                {"multiplier": m, "lr": lr, "command_id": cmd.id},
            )
        return rest

    def ack(self, cmd: SteerCommand, step: int | None = None, message: str = "") -> None:
        """Record that the loop applied `cmd`, taking effect after `step` (default: the last step)."""
        self._poller.ack(cmd, self._step if step is None else step, message)

    def reject(self, cmd: SteerCommand, reason: str, step: int | None = None) -> None:
        """Record that the loop will not apply `cmd`, and why (shown in the TUI)."""
        self._poller.reject(cmd, reason, self._step if step is None else step)

    def finish(
        self,
        status: str = "completed",
        summary: Mapping[str, Any] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        """Write everything queued and mark the run ended with `status` (idempotent)."""
        if status not in FINISH_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINISH_STATUSES)}; got {status!r}")
        if self.finished:
            return
        self.finished = True
        self.status = status
        if self._restore_sigterm is not None:
            self._restore_sigterm()
            self._restore_sigterm = None
        if self._client is None:
            return  # not rank 0: nothing to write
        final = {"steps": self._step, "wall_time_s": round(time.time() - self._started, 3)}
        final.update(summary or {})
        self._client.finish(status, reason, final, step=self._step)
        self._client.store.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc_type is None:
            self.finish("completed")
        elif self.exit_status is not None and issubclass(exc_type, SystemExit):
            self.finish(self.exit_status, reason=self.exit_reason)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("stopped", reason="KeyboardInterrupt")
        else:
            self.finish("failed", reason=f"{exc_type.__name__}: {exc}")

    def __repr__(self) -> str:
        return f"<tuitrain.Run {self.name!r} id={self.id} status={self.status}>"


def init(
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    runs_dir: str | os.PathLike[str] = "runs",
    derived: Mapping[str, Any] | None = None,
    poll_interval: float = POLL_INTERVAL_S,
    rank: int | None = None,
    world: int | None = None,
    system_interval: float | None = DEFAULT_INTERVAL_S,
) -> Run:
    """Register a running run in `<runs_dir>/tuitrain.db` and return it for logging and steering.

    With several processes (torchrun, accelerate launch), call it on every rank after the
    process group exists: rank 0 registers and writes, and poll() gives every rank the same
    commands at the same step. rank / world default to torch.distributed's, else RANK / WORLD_SIZE.
    system_interval: seconds between `sys/` samples (GPU util/memory/power with nvidia-ml-py,
    process CPU%, host RAM, free disk), taken by the writer's thread, never in log(); 0 or None: off."""
    return Run(
        runs_dir=runs_dir,
        name=name,
        config=config,
        derived=derived,
        poll_interval=poll_interval,
        rank=rank,
        world=world,
        system_interval=system_interval,
    )


def _rank_world() -> tuple[int, int]:
    """(rank, world size): torch.distributed's when initialised, else RANK / WORLD_SIZE, else (0, 1)."""
    dist = sys.modules.get("torch.distributed")  # never import torch just to ask
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _broadcast(box: list) -> None:
    """Rank 0's box[0] to every rank (torch.distributed; gloo or NCCL with the device set)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_initialized():
        raise RuntimeError(
            "tuitrain.init() with several processes needs the process group first: call it after"
            " torch.distributed.init_process_group() (or Accelerator()), on every rank"
        )
    dist.broadcast_object_list(box, src=0)


def _number(key: str, value: Any) -> Any:
    if isinstance(value, (int, float)):
        return float(value)
    numel = getattr(value, "numel", None)
    if callable(numel) and hasattr(value, "item"):  # a tensor: keep it async, drop its graph
        if numel() != 1:
            raise ValueError(
                f"metric {key!r} is a tensor with {numel()} elements; log a scalar (e.g. .mean())"
            )
        return value.detach() if hasattr(value, "detach") else value
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:  # numpy scalars
        return value.item()
    raise ValueError(
        f"metric {key!r} has value {value!r} ({type(value).__name__}); log numbers only"
        " (convert with float(), or use run.event() for text)"
    )
