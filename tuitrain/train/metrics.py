"""Provides the per-step metric buffer (loss and grad norm stay on the device and leave in one
batch every `log_every` steps: the loop's one deliberate host sync for logging) and the step
timer that splits step time into data wait, compute and overhead without a sync of its own."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch


@dataclass
class StepRow:
    """One optimizer step's metrics, on the host."""

    step: int
    loss: float
    grad_norm: float
    lr: float
    epoch: float


class MetricBuffer:
    """Collects per-step device scalars without syncing; `drain` moves them to the host at once."""

    def __init__(self, capacity: int, device, world: int, reduce=None):
        self.capacity = capacity
        self.values = torch.zeros((capacity, 2), dtype=torch.float32, device=device)
        self.host: list[tuple[int, float, float]] = []  # (step, lr, epoch): already on the host
        self.samples = 0
        self.tokens = 0
        self.span = 0  # sum of tokens x their batch's sequence length (the attention term's T)
        self.world = world
        self.reduce = reduce
        self.t0 = time.perf_counter()
        self.sync_s = 0.0  # host time the last drain waited for the device (and the other ranks)
        self.window_span = 0.0  # the last drained window's token-weighted sequence length
        # Run totals of the drained windows (this process's part of the run): the summary's rates.
        self.total_tokens = 0
        self.total_span = 0
        self.total_s = 0.0

    def __len__(self) -> int:
        return len(self.host)

    def add(
        self,
        step: int,
        loss: torch.Tensor,
        grad_norm: torch.Tensor,
        lr: float,
        epoch: float,
        samples: int,
        tokens: int,
        span: int = 0,
    ) -> None:
        """Record one step; device writes only (no .item(), no sync). `span`: tokens x sequence
        length summed over the step's micro batches."""
        k = len(self.host)
        self.values[k, 0] = loss
        self.values[k, 1] = grad_norm
        self.host.append((step, lr, epoch))
        self.samples += samples
        self.tokens += tokens
        self.span += span

    def full(self) -> bool:
        """Whether the buffer holds `capacity` steps."""
        return len(self.host) >= self.capacity

    def reset_clock(self) -> None:
        """Restart the throughput clock (after evals and checkpoints, which are not train time)."""
        self.t0 = time.perf_counter()

    def drain(self) -> tuple[list[StepRow], dict[str, float]]:
        """Rows of the buffered steps and the window's throughput; every rank must call it at the
        same step when world > 1 (the mean over ranks is one collective)."""
        k = len(self.host)
        self.sync_s = 0.0
        if k == 0:
            return [], {}
        vals = self.values[:k]
        if self.world > 1 and self.reduce is not None:
            vals = self.reduce(vals.clone(), "mean")
        t_sync = time.perf_counter()
        pairs = vals.tolist()  # the deliberate host sync: one per log_every steps
        now = time.perf_counter()
        self.sync_s = now - t_sync
        dt = max(now - self.t0, 1e-9)
        rates = {
            "samples_per_s": self.samples * self.world / dt,
            "tokens_per_s": self.tokens * self.world / dt,
        }
        rows = [
            StepRow(s, float(p[0]), float(p[1]), lr, ep)
            for (s, lr, ep), p in zip(self.host, pairs, strict=True)
        ]
        self.window_span = self.span / self.tokens if self.tokens else 0.0
        self.total_tokens += self.tokens * self.world
        self.total_span += self.span * self.world
        self.total_s += dt
        self.host.clear()
        self.samples = self.tokens = self.span = 0
        self.t0 = now
        return rows, rates


class StepTimer:
    """Step time split into data wait, compute and overhead, read once per log window.

    The loop adds host seconds to `data` (blocked on the next batch) and `overhead` (tuitrain's
    own per-step code: metric buffer, flush, steering) itself. Compute on CPU is host time (the
    device is the host: exact). On CUDA the host only queues kernels, so compute is the device
    time between two events recorded around each step's forward/backward/optimizer; they are
    read at `window`, after the buffer's drain has synced, so timing adds no sync. There the
    host parts can overlap queued device work: their sum can exceed the step time."""

    def __init__(self, device) -> None:
        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self.events: list[tuple] = []  # (start, end) CUDA event pairs, reused window to window
        self.n = 0  # pairs recorded in this window
        self.data = self.compute = self.overhead = 0.0
        self.totals = {"data": 0.0, "compute": 0.0, "overhead": 0.0}
        self.steps = 0  # steps in the totals

    def begin(self) -> None:
        """Compute of one step starts (after its batches are on the host)."""
        if self.cuda:
            if self.n == len(self.events):
                self.events.append(
                    (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                )
            self.events[self.n][0].record()

    def end(self) -> None:
        """Compute of the step is queued (optimizer stepped, gradients zeroed)."""
        if self.cuda:
            self.events[self.n][1].record()
            self.n += 1

    def window(self, steps: int, sync_s: float) -> dict[str, float]:
        """Seconds per step of the window just drained (call after the drain's sync); resets.
        `sync_s`: the host time that sync waited, compute on CPU, already in the events on CUDA."""
        if self.cuda:
            # Every event precedes the drained values on the stream, so all have completed.
            compute = sum(a.elapsed_time(b) for a, b in self.events[: self.n]) / 1000.0
        else:
            compute = self.compute + sync_s
        parts = {"data": self.data, "compute": compute, "overhead": self.overhead}
        for k, v in parts.items():
            self.totals[k] += v
        self.steps += steps
        self.data = self.compute = self.overhead = 0.0
        self.n = 0
        n = max(1, steps)
        return {f"time/{k}_s": v / n for k, v in parts.items()}

    def run_means(self) -> dict[str, float]:
        """Seconds per step over every drained window, keyed data_s / compute_s / overhead_s."""
        n = max(1, self.steps)
        return {f"{k}_s": v / n for k, v in self.totals.items()}


def first_nonfinite(rows: list[StepRow]) -> StepRow | None:
    """The first row whose loss is NaN or infinite."""
    return next((r for r in rows if not math.isfinite(r.loss)), None)
