"""Provides RunData (what the detectors look at) and read_run: one run's recent rows, downsampled
series, commands and config from the store, at a cost that does not grow with run length."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from tuitrain.runs import liveness

# The metrics the detectors read; names as the trainer and the integrations log them.
RECENT = ("loss", "grad_norm", "lr", "tokens_per_s", "samples_per_s")
OVERVIEW = (
    "loss", "lr", "grad_norm", "val_loss", "tokens_per_s", "samples_per_s", "samples/repetition",
)  # fmt: skip
OVERVIEW_BUCKETS = 200
GPU_UTIL = re.compile(r"^sys/gpu\d+_util$")
BYTE_VOCAB = 259  # the byte tokenizer: 256 bytes + pad, bos, eos (docs/contracts.md)


@dataclass
class Curve:
    """Exact rows of one metric: steps, values (NaN kept) and write times, by step."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


@dataclass
class RunData:
    """Everything a diagnosis reads about one run (plain data: build it from a store or by hand)."""

    run_id: str
    status: str = "running"
    config: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    recent: dict[str, Curve] = field(default_factory=dict)  # the last ~2 windows, exact
    first_loss: list[float] = field(default_factory=list)  # the first logged losses
    overview: dict[str, list[tuple[int, float, float, float]]] = field(default_factory=dict)
    commands: list[Any] = field(default_factory=list)  # store Commands (who changed the LR, when)
    last_step: int | None = None
    now: float = 0.0
    stall: tuple[bool, float | None, float | None] = (False, None, None)  # liveness verdict
    lineage_lr_peak: float | None = None  # a branch's ancestors' highest LR before its fork

    @property
    def ended(self) -> bool:
        """The run reached a terminal status."""
        return self.status not in ("queued", "running")

    def curve(self, name: str) -> Curve:
        """The recent rows of `name` (empty when not logged)."""
        return self.recent.get(name) or Curve()


def cfg_get(config: dict[str, Any], *paths: str) -> Any:
    """The first dotted path present in the (trainer or free-form) config, else None."""
    for path in paths:
        node: Any = config
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return None


def chance_loss(config: dict[str, Any]) -> float | None:
    """The loss of a model that learned nothing: ln(vocab) for a causal LM, ln(classes) for
    sequence classification; None when the config does not say (a pretrained tokenizer)."""
    task = cfg_get(config, "model.task")
    if task == "seq-cls":
        n = cfg_get(config, "model.num_labels")
        return math.log(n) if isinstance(n, int) and n > 1 else None
    if task == "causal-lm":
        vocab = cfg_get(config, "model.arch.vocab_size")
        if vocab is None and cfg_get(config, "model.tokenizer") == "bytes":
            vocab = BYTE_VOCAB
        return math.log(vocab) if isinstance(vocab, int) and vocab > 1 else None
    return None


def read_run(store: Any, run_ref: Any, window: int = 100, now: float | None = None) -> RunData:
    """Read a run (id, name or RunInfo) for diagnosis: the last 2 x `window` logged steps
    exactly, the first losses, OVERVIEW_BUCKETS-bucket series and the commands."""
    run = liveness.view_run(store, run_ref) if isinstance(run_ref, str) else run_ref
    data = RunData(
        run.id,
        run.status,
        run.config or {},
        run.derived or {},
        last_step=store.last_step(run.id),
        now=time.time() if now is None else now,
    )
    data.stall = liveness.stall_state(run, data.now)
    if data.last_step is None:
        return data
    names = set(store.metric_names(run.id))
    # Rows per step: one for the trainer (log_every only batches them), HF logging_steps; grow the span until
    # the window is filled (at most three reads), so sparse logging still gets 2 windows.
    stride = cfg_get(data.config, "training_args.logging_steps") or 1
    stride = max(1, int(stride)) if isinstance(stride, int | float) else 1
    want = 2 * window
    lo = data.last_step - want * stride
    for _ in range(3):
        loss = store.tail(run.id, ["loss"], after_step=lo)
        if len(loss) >= want or lo < 0:
            break
        stride *= 8
        lo = data.last_step - want * stride
    gpu_util = sorted(n for n in names if GPU_UTIL.match(n))  # the trainer's system samples
    rows = store.tail(run.id, [n for n in RECENT if n in names] + gpu_util, after_step=lo)
    for p in rows:
        c = data.recent.setdefault(p.name, Curve())
        c.steps.append(p.step)
        c.values.append(p.value)
        c.times.append(p.time)
    root = _root(store, run)  # a branch is judged from where its lineage started, not its fork
    span = store.step_range(root.id)
    if span is not None and (root is not run or "loss" in names):
        head = store.tail(root.id, ["loss"], after_step=span[0] - 1, until=span[0] + 10 * stride)
        data.first_loss = [p.value for p in head[:10]]
    for n in OVERVIEW:
        if n in names:
            data.overview[n] = store.series(run.id, n, OVERVIEW_BUCKETS)
    if root is not run:
        data.lineage_lr_peak = _lineage_peak(store, run, "lr")
    data.commands = store.commands(run.id)
    return data


def _lineage_peak(store: Any, run: Any, name: str, depth: int = 16) -> float | None:
    """The highest `name` a branch's ancestors logged up to where each was forked from (a branch
    that starts mid-schedule is judged against the schedule's real peak, not its fork's LR)."""
    peak: float | None = None
    for _ in range(depth):
        if not getattr(run, "parent", None):
            break
        fork = getattr(run, "fork_step", None)
        try:
            run = store.get_run(run.parent)
        except Exception:  # the parent was removed: its history is gone
            break
        for p in store.series(run.id, name, OVERVIEW_BUCKETS):
            if (fork is None or p[0] <= fork) and p[2] is not None and math.isfinite(p[2]):
                peak = p[2] if peak is None else max(peak, p[2])
    return peak


def _root(store: Any, run: Any, depth: int = 16) -> Any:
    """The first run of `run`'s lineage (itself when it is not a branch; a deleted parent ends it)."""
    for _ in range(depth):
        if not getattr(run, "parent", None):
            return run
        try:
            run = store.get_run(run.parent)
        except Exception:  # the parent was removed: the branch is all there is
            return run
    return run
