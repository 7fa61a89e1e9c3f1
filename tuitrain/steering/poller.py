"""Provides the steering poller for any training loop: rank 0 claims commands from the store at
most every ~0.25 s, every rank receives the same commands at the same optimizer step.

Use (once per optimizer step, on every rank):

    poller = SteeringPoller(StoreSource(runs_dir, run_id) if rank == 0 else None, rank=rank, world=world)
    for cmd in poller.poll(step):            # validated commands, same list on all ranks
        ... apply cmd.kind / cmd.value ...
        poller.ack(cmd, step, "lr 1e-3")     # or poller.reject(cmd, reason, step); no-op off rank 0

A single process pays one clock read per step and no collective. With N ranks, all ranks meet in
one `broadcast_object_list` every `sync_every` steps; rank 0 chooses the next `sync_every` from its
measured step time (~0.25 s apart) and sends it along, so the schedule of collectives is the same
on every rank without any rank reading its own clock. Kept free of torch: accelerate's broadcast
is imported only when world > 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from tuitrain.steering.protocol import SIGTERM_KIND, SteerCommand, validate


class CommandSource(Protocol):
    """Where commands come from and where acks go (the store on rank 0)."""

    def claim(self) -> list[tuple[int, str, dict]]: ...
    def ack(self, cmd_id: int, step: int, message: str) -> None: ...
    def reject(self, cmd_id: int, reason: str, step: int | None) -> None: ...


class StoreSource:
    """A CommandSource over `tuitrain.store.Store` for one run (own connection: use on one thread)."""

    def __init__(self, runs_dir, run_id: str, store=None):
        """`store`: an open Store to share (the run client's), else a new connection."""
        if store is None:
            from tuitrain.store import Store

            store = Store(runs_dir)
        self.store, self.run_id = store, run_id

    def claim(self) -> list[tuple[int, str, dict]]:
        """Pending commands, each claimed once."""
        return [(c.id, c.kind, c.payload or {}) for c in self.store.claim_commands(self.run_id)]

    def ack(self, cmd_id: int, step: int, message: str) -> None:
        """Mark applied at `step`."""
        self.store.ack_command(cmd_id, step, message)

    def reject(self, cmd_id: int, reason: str, step: int | None) -> None:
        """Mark rejected with `reason`."""
        self.store.reject_command(cmd_id, reason, step)


class SteeringPoller:
    """Delivers steering commands to every rank at the same optimizer step (see module docstring)."""

    def __init__(
        self,
        source: CommandSource | None,
        *,
        rank: int = 0,
        world: int = 1,
        interval: float = 0.25,
        broadcast: Callable[[list], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.source = source if rank == 0 else None
        self.rank, self.world, self.interval, self.clock = rank, world, interval, clock
        self._broadcast = broadcast
        self._last_claim = clock()
        self._next_sync = 0  # first poll syncs, so the sync schedule starts identical everywhere
        self._last_sync_step, self._last_sync_time = 0, self._last_claim
        self.sync_every = 1

    def _claim(self, step: int) -> list[SteerCommand]:
        if self.source is None:
            return []
        out = []
        for cmd_id, kind, payload in self.source.claim():
            cmd = validate(cmd_id, kind, payload)
            if isinstance(cmd, str):
                self.source.reject(cmd_id, cmd, step)
            else:
                out.append(cmd)
        return out

    def poll(self, step: int, stop_requested: bool = False) -> list[SteerCommand]:
        """Commands to apply after optimizer step `step`; call on every rank every step.
        `stop_requested` is this rank's SIGTERM flag (only rank 0's counts with N ranks)."""
        if self.world == 1:
            cmds: list[SteerCommand] = []
            now = self.clock()
            if (
                now - self._last_claim >= self.interval
            ):  # one clock read per step, a query per interval
                self._last_claim = now
                cmds = self._claim(step)
            if stop_requested:
                cmds.append(SteerCommand(None, SIGTERM_KIND))
            return cmds
        if step < self._next_sync:
            return []
        msg = None
        if self.rank == 0:
            now = self.clock()
            per_step = (now - self._last_sync_time) / max(1, step - self._last_sync_step)
            self._last_sync_step, self._last_sync_time = step, now
            nxt = max(1, min(1000, int(self.interval / per_step))) if per_step > 0 else 1
            cmds = self._claim(step)
            if stop_requested:
                cmds.append(SteerCommand(None, SIGTERM_KIND))
            msg = {"cmds": [(c.id, c.kind, c.value, c.payload) for c in cmds], "next": nxt}
        box = [msg]
        self._bcast(box)  # the collective: every rank reaches it at the same step
        msg = box[0]
        self.sync_every = msg["next"]
        self._next_sync = step + self.sync_every
        return [SteerCommand(i, k, v, p) for i, k, v, p in msg["cmds"]]

    def wake(self) -> None:
        """Claim at the next poll instead of waiting out the interval (the trainer's own doctor
        just sent a command: it applies after the next step). With N ranks the claim schedule
        is shared by all of them, so it stays as it is (the next sync is at most `interval` away)."""
        if self.world == 1:
            self._last_claim = -float("inf")

    def _bcast(self, box: list) -> None:
        if self._broadcast is None:
            from accelerate.utils import broadcast_object_list

            self._broadcast = broadcast_object_list
        self._broadcast(box)

    def ack(self, cmd: SteerCommand, step: int, message: str = "") -> None:
        """Mark `cmd` applied at `step` (rank 0 only; commands without an id are internal)."""
        if self.source is not None and cmd.id is not None:
            self.source.ack(cmd.id, step, message)

    def reject(self, cmd: SteerCommand, reason: str, step: int | None = None) -> None:
        """Mark `cmd` rejected with `reason` (rank 0 only)."""
        if self.source is not None and cmd.id is not None:
            self.source.reject(cmd.id, reason, step)
