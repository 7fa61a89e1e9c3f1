"""Provides TuiTrainTracker: an Accelerate `GeneralTracker` that writes `accelerator.log()` to the
tuitrain store and gives the script the same steering (poll / ack / reject / steer_lr) as
`tuitrain.init`.

    tracker = TuiTrainTracker(runs_dir="runs", name="my-run")
    accelerator = Accelerator(log_with=tracker)
    accelerator.init_trackers("my-project", config={"lr": 1e-3})  # registers the run
    accelerator.log({"loss": loss}, step=step)                     # main process, never blocks
    for cmd in tracker.poll(step): ...                             # every rank, every step
    accelerator.end_training()                                     # the run ends completed

The run itself is a `tuitrain.client.api.Run` (`tracker.tracker` on the main process): logging, steering,
SIGTERM handling and the end-of-process status are that class's, not a copy of it.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

from accelerate.tracking import GeneralTracker, on_main_process

from tuitrain.client.api import POLL_INTERVAL_S, Run, _rank_world
from tuitrain.steering import SteerCommand

__all__ = ["TuiTrainTracker"]


class TuiTrainTracker(GeneralTracker):
    """Accelerate tracker writing to `<runs_dir>/tuitrain.db` (a run the TUI lists, charts, steers).

    The run is registered on the main process by `init_trackers()` (with its `config`), or by the
    first `log()` / `poll()` when init_trackers gets no config. With several processes, call
    `poll(step)` on every rank at every step: the main process reads the commands and every rank
    gets the same ones after the same step (a small broadcast about every `poll_interval` s)."""

    name = "tuitrain"
    requires_logging_directory = False
    main_process_only = True  # init, log and finish run on the main process (Accelerate's rule)

    def __init__(
        self,
        runs_dir: str | os.PathLike[str] = "runs",
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        poll_interval: float = POLL_INTERVAL_S,
    ) -> None:
        super().__init__()
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(
                f"config must be a dict of plain values, got {type(config).__name__};"
                " pass e.g. config={'lr': 3e-4}"
            )
        self.runs_dir = runs_dir
        self.run_name = name
        self.config: dict[str, Any] = dict(config or {})
        self.poll_interval = poll_interval
        self._run: Run | None = None
        self._warned: set[str] = set()

    # ---- the run on this rank ------------------------------------------------------------
    def _ensure(self) -> Run:
        """This rank's Run, made on first use: on rank 0 it registers the record (and writes);
        elsewhere it only takes part in steering. No collective here (announce=False): Accelerate
        calls init_trackers / log on the main process only."""
        if self._run is None:
            rank, world = _rank_world()
            self._run = Run(
                runs_dir=self.runs_dir,
                name=self.run_name,
                config=_plain(self.config),
                derived={"source": "accelerate"},
                poll_interval=self.poll_interval,
                rank=rank,
                world=world,
                announce=False,
            )
        return self._run

    @property
    def tracker(self) -> Run | None:
        """The `tuitrain.client.api.Run` of this process (None before the run exists on it)."""
        return self._run

    @property
    def run(self) -> Run:
        """This rank's `tuitrain.client.api.Run`, made if needed (on the main process: registered)."""
        return self._ensure()

    # ---- GeneralTracker ------------------------------------------------------------------
    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        """Register the run with `values` (merged over the constructor's `config`) as its config."""
        if self._run is not None:
            warnings.warn(
                f"tuitrain run {self._run.name!r} is already registered; its config stays as it was"
                " (call accelerator.init_trackers(..., config=...) before the first log)",
                stacklevel=2,
            )
            return
        self.config.update(values or {})
        self._ensure()

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        """Queue numbers (and 0-d tensors) for `step`; nested dicts become `a/b`, text an event."""
        run = self._ensure()
        numbers: dict[str, Any] = {}
        for key, value in _flatten(values):
            if isinstance(value, str):
                run.event("log", f"{key}: {value}", step)
            elif _scalar(value):
                numbers[key] = value
            elif key not in self._warned:
                self._warned.add(key)  # once per name: a loop logs the same keys every step
                warnings.warn(
                    f"tuitrain tracker: {key!r} is a {type(value).__name__}, not a number;"
                    " it is not stored (log scalars, or text for a timeline event)",
                    stacklevel=2,
                )
        if numbers:
            run.log(numbers, step=step)

    @on_main_process
    def finish(
        self,
        status: str = "completed",
        summary: Mapping[str, Any] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        """End the run (`accelerator.end_training()` calls it with the defaults); idempotent, so
        call `tracker.finish("early_stopped")` before end_training to end with another status."""
        if self._run is not None:
            self._run.finish(status, summary, reason=reason)

    # ---- steering (every rank) -----------------------------------------------------------
    def poll(self, step: int | None = None) -> list[SteerCommand]:
        """Commands to apply after `step`, the same on every rank (see `tuitrain.client.api.Run.poll`)."""
        return self._ensure().poll(step)

    def ack(self, cmd: SteerCommand, step: int | None = None, message: str = "") -> None:
        """Record that `cmd` was applied after `step` (written by the main process)."""
        self._ensure().ack(cmd, step, message)

    def reject(self, cmd: SteerCommand, reason: str, step: int | None = None) -> None:
        """Record that `cmd` will not be applied, and why."""
        self._ensure().reject(cmd, reason, step)

    def steer_lr(self, scheduler: Any, multiplier: float = 1.0) -> None:
        """Let poll() apply set_lr / scale_lr to this LambdaLR (on every rank; see Run.steer_lr)."""
        self._ensure().steer_lr(scheduler, multiplier)

    @property
    def lr_multiplier(self) -> float:
        """The steering multiplier on the schedule (save it with checkpoints)."""
        return self._run.lr_multiplier if self._run is not None else 1.0


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            out += _flatten(value, f"{prefix}{key}/")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _scalar(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return True
    numel = getattr(value, "numel", None)
    if callable(numel):  # a tensor
        return numel() == 1
    return hasattr(value, "item") and getattr(value, "size", 1) == 1  # numpy scalars


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as JSON values (Accelerate passes argparse values through: paths, enums...)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out[str(key)] = _plain(value)
        elif value is None or isinstance(value, (bool, int, str)):
            out[str(key)] = value
        elif isinstance(value, float):
            out[str(key)] = value if math.isfinite(value) else str(value)
        elif isinstance(value, (list, tuple)):
            out[str(key)] = [v if isinstance(v, (bool, int, float, str)) else str(v) for v in value]
        else:
            out[str(key)] = str(value)
    return out
