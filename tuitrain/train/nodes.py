"""Provides NodeSystem: the `sys/` metrics of a multi-node run's other nodes.

The main node's rank 0 samples its own machine through its RunWriter (tuitrain.telemetry.sysinfo). On every
other node, local rank 0 samples its machine on a daemon thread here (never on the step path).
The samples reach the main rank in one all-gather per log window: every rank calls `exchange` at
the same step (the window's drain), so no rank waits on another's clock. The main rank stores a
node's fresh sample under `sys/node{K}_<name>` (e.g. `sys/node1_gpu0_util`,
`sys/node1_cpu_percent`); a sample already stored is not sent again."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuitrain.telemetry.sysinfo import DEFAULT_INTERVAL_S, PREFIX, SystemSampler

log = logging.getLogger(__name__)


def node_index(process_index: int, env: dict[str, str] | None = None) -> int:
    """This process's node (machine rank): torchrun's GROUP_RANK, else from the local world size."""
    env = os.environ if env is None else env
    if env.get("GROUP_RANK", "").isdigit():
        return int(env["GROUP_RANK"])
    local = int(env.get("LOCAL_WORLD_SIZE") or 1)
    return process_index // max(local, 1)


def node_name(node: int, name: str) -> str:
    """`sys/gpu0_util` of node 1 -> `sys/node1_gpu0_util`."""
    return f"{PREFIX}node{node}_{name.removeprefix(PREFIX)}"


class NodeSystem:
    """One per rank of a multi-node run. `sampling` on local rank 0 of a node other than the main
    one; `gather(list) -> list` is the all-gather of picklable objects (accelerate's gather_object)."""

    def __init__(
        self,
        node: int,
        sampling: bool,
        gather: Callable[[list], list],
        runs_dir: str | os.PathLike[str],
        interval: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.node, self.sampling, self.gather = node, sampling, gather
        self.runs_dir, self.interval = Path(runs_dir), interval
        self._lock = threading.Lock()
        self._latest: dict[str, float] = {}
        self._seq = 0  # samples taken here
        self._sent = 0  # the newest sample this rank put into an exchange
        self._seen: dict[int, int] = {}  # on the main rank: node -> newest sample stored
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if sampling:
            self._thread = threading.Thread(
                target=self._loop, name="tuitrain-node-sys", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        sampler = SystemSampler(self.runs_dir)
        try:
            while True:
                try:
                    values = sampler.sample()
                except Exception:  # a sampler bug costs this node's sys/ metrics, never the run
                    log.exception(
                        "tuitrain system sampler failed on node %s; sampling off", self.node
                    )
                    return
                with self._lock:
                    self._latest, self._seq = values, self._seq + 1
                if self._stop.wait(self.interval):
                    return
        finally:
            sampler.close()

    def exchange(self) -> dict[str, float]:
        """Every rank, at the same step: share this node's new sample; on the main rank, the
        other nodes' new samples as `sys/node{K}_...` values ({} elsewhere, or with nothing new)."""
        payload: Any = None
        with self._lock:
            if self._seq > self._sent:
                payload = (self.node, self._seq, dict(self._latest))
                self._sent = self._seq
        got = self.gather([payload])
        out: dict[str, float] = {}
        for item in got:
            if not item:
                continue
            node, seq, values = item
            if node == 0 or seq <= self._seen.get(node, 0):
                continue
            self._seen[node] = seq
            out.update({node_name(node, k): float(v) for k, v in values.items()})
        return out

    def close(self) -> None:
        """Stop the sampling thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
