"""Provides the per-step metric buffer: loss and grad norm stay on the device and leave in one
batch every `log_every` steps (the loop's one deliberate host sync for logging)."""

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
        self.world = world
        self.reduce = reduce
        self.t0 = time.perf_counter()

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
    ) -> None:
        """Record one step; device writes only (no .item(), no sync)."""
        k = len(self.host)
        self.values[k, 0] = loss
        self.values[k, 1] = grad_norm
        self.host.append((step, lr, epoch))
        self.samples += samples
        self.tokens += tokens

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
        if k == 0:
            return [], {}
        vals = self.values[:k]
        if self.world > 1 and self.reduce is not None:
            vals = self.reduce(vals.clone(), "mean")
        pairs = vals.tolist()  # the deliberate host sync: one per log_every steps
        now = time.perf_counter()
        dt = max(now - self.t0, 1e-9)
        rates = {
            "samples_per_s": self.samples * self.world / dt,
            "tokens_per_s": self.tokens * self.world / dt,
        }
        rows = [
            StepRow(s, float(p[0]), float(p[1]), lr, ep)
            for (s, lr, ep), p in zip(self.host, pairs, strict=True)
        ]
        self.host.clear()
        self.samples = self.tokens = 0
        self.t0 = now
        return rows, rates


def first_nonfinite(rows: list[StepRow]) -> StepRow | None:
    """The first row whose loss is NaN or infinite."""
    return next((r for r in rows if not math.isfinite(r.loss)), None)
