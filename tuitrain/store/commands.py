"""Provides the steering-command side of Store: send, claim (exactly once), acknowledge, reject,
wait, and reject the pending commands of an ended run (whether they can still be applied is
decided by tuitrain.runs.liveness, which looks at processes)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuitrain.steering.kinds import VALUE_KEYS, kind_error, value_of
from tuitrain.store.db import dumps as _dumps
from tuitrain.store.db import immediate
from tuitrain.store.db import loads as _loads
from tuitrain.store.models import (
    TERMINAL_STATUSES,
    Command,
    CommandRefused,
    InvalidValue,
    RunNotFound,
)

CRASHED_BEFORE_APPLYING = "run crashed before applying it"
ENDED_BEFORE_APPLYING = "run ended before applying it"

_CMD_COLS = "id, run_id, kind, payload, created, status, claimed, finished, applied_step, reason"


def ended_reason(status: str) -> str:
    """Why a pending command of a run that ended with this status is rejected."""
    return CRASHED_BEFORE_APPLYING if status in ("crashed", "failed") else ENDED_BEFORE_APPLYING


class CommandsMixin:
    """Steering commands; mixed into Store (uses its per-thread conn, _q, get_run and _add_event)."""

    conn: sqlite3.Connection
    runs_dir: Path
    host: str

    def send_command(self, run_id: str, kind: str, payload: Mapping[str, Any] | None = None) -> int:
        """Queue a steering command for the run's trainer; returns the command id."""
        payload = _check_command(kind, dict(payload or {}))
        with immediate(self.conn):
            rows = self.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchall()
            if not rows:
                raise RunNotFound(f"no run with id {run_id!r} in {self.runs_dir}")
            if rows[0][0] in TERMINAL_STATUSES:
                raise CommandRefused(
                    f"run {run_id} is {rows[0][0]}: commands go to queued or running runs only"
                )
            cur = self.conn.execute(
                "INSERT INTO commands (run_id, kind, payload, created, status) VALUES (?, ?, ?, ?, 'pending')",
                (run_id, kind, _dumps(payload), time.time()),
            )
            return int(cur.lastrowid)

    @staticmethod
    def _row_to_cmd(r: tuple) -> Command:
        return Command(r[0], r[1], r[2], _loads(r[3], {}), r[4], r[5], r[6], r[7], r[8], r[9] or "")

    def claim_commands(self, run_id: str) -> list[Command]:
        """Take this run's unclaimed pending commands (oldest first); each is handed out exactly once."""
        now = time.time()
        # Cheap read first, outside a write transaction: the trainer polls this often and there
        # is usually nothing.
        if not self.conn.execute(
            "SELECT 1 FROM commands WHERE run_id = ? AND status = 'pending' AND claimed IS NULL LIMIT 1",
            (run_id,),
        ).fetchall():
            return []
        with immediate(self.conn):
            rows = self.conn.execute(
                f"SELECT {_CMD_COLS} FROM commands WHERE run_id = ? AND status = 'pending'"
                " AND claimed IS NULL ORDER BY id",
                (run_id,),
            ).fetchall()
            self.conn.executemany(
                "UPDATE commands SET claimed = ? WHERE id = ?", [(now, r[0]) for r in rows]
            )
        return [self._row_to_cmd((*r[:6], now, *r[7:])) for r in rows]

    def _finish_command(
        self, cmd_id: int, status: str, step: int | None, reason: str, message: str
    ) -> None:
        now = time.time()
        with immediate(self.conn):
            rows = self.conn.execute(
                "SELECT run_id, kind, payload, status FROM commands WHERE id = ?", (cmd_id,)
            ).fetchall()
            if not rows:
                raise InvalidValue(f"no command with id {cmd_id}")
            run_id, kind, payload, old = rows[0]
            if old != "pending":
                raise InvalidValue(f"command {cmd_id} is already {old}")
            self.conn.execute(
                "UPDATE commands SET status = ?, finished = ?, applied_step = ?, reason = ?,"
                " claimed = coalesce(claimed, ?) WHERE id = ?",
                (status, now, step, reason, now, cmd_id),
            )
            data = {
                "command_id": cmd_id,
                "kind": kind,
                "payload": _loads(payload, {}),
                "status": status,
            }
            self._add_event(run_id, "command", message, step, data, now)

    def ack_command(self, cmd_id: int, step: int, message: str = "") -> None:
        """Mark the command applied at this optimizer step; adds a 'command' event."""
        cmd = self.get_command(cmd_id)
        text = message or f"command {cmd_id} ({cmd.kind}) applied at step {step}"
        self._finish_command(cmd_id, "applied", int(step), message, text)

    def reject_command(self, cmd_id: int, reason: str, step: int | None = None) -> None:
        """Mark the command rejected with a reason; adds a 'command' event."""
        cmd = self.get_command(cmd_id)
        self._finish_command(
            cmd_id, "rejected", step, reason, f"command {cmd_id} ({cmd.kind}) rejected: {reason}"
        )

    def get_command(self, cmd_id: int) -> Command:
        """One command by id."""
        rows = self._q(f"SELECT {_CMD_COLS} FROM commands WHERE id = ?", (int(cmd_id),))
        if not rows:
            raise InvalidValue(f"no command with id {cmd_id}")
        return self._row_to_cmd(rows[0])

    def commands(self, run_id: str) -> list[Command]:
        """All of the run's commands, oldest first."""
        rows = self._q(f"SELECT {_CMD_COLS} FROM commands WHERE run_id = ? ORDER BY id", (run_id,))
        return [self._row_to_cmd(r) for r in rows]

    def has_pending(self, run_id: str, claimed: bool) -> bool:
        """Whether the run has a pending command that a trainer has (not) claimed."""
        nul = "IS NOT NULL" if claimed else "IS NULL"
        return bool(
            self._q(
                f"SELECT 1 FROM commands WHERE run_id = ? AND status = 'pending' AND claimed {nul}"
                " LIMIT 1",
                (run_id,),
            )
        )

    def reject_pending(self, run_id: str, reason: str, claimed: bool) -> int:
        """Reject the run's pending claimed (or unclaimed) commands with this reason, one
        'command' event each; returns how many. The caller decided they can never be applied."""
        nul = "IS NOT NULL" if claimed else "IS NULL"
        now = time.time()
        with immediate(self.conn):
            rows = self.conn.execute(
                "SELECT id, kind, payload FROM commands WHERE run_id = ? AND status = 'pending'"
                f" AND claimed {nul}",
                (run_id,),
            ).fetchall()
            for cid, kind, payload in rows:
                self.conn.execute(
                    "UPDATE commands SET status = 'rejected', finished = ?, reason = ?,"
                    " claimed = coalesce(claimed, ?) WHERE id = ?",
                    (now, reason, now, cid),
                )
                data = {"command_id": cid, "kind": kind, "payload": _loads(payload, {}), "status": "rejected"}  # fmt: skip
                self._add_event(run_id, "command", f"command {cid} ({kind}) rejected: {reason}", None, data, now)  # type: ignore[attr-defined]  # fmt: skip
        return len(rows)

    def wait_command(self, cmd_id: int, timeout: float = 30.0, poll: float = 0.1) -> Command:
        """Poll until the command is applied or rejected, or timeout; returns it (still pending on timeout).

        A command nobody claimed before its run ended is rejected here, so nobody waits on it;
        tuitrain.runs.liveness.wait_command also tells a dead run and a claimed command whose
        trainer is gone.
        """
        deadline = time.monotonic() + timeout
        while True:
            cmd = self.get_command(cmd_id)
            if cmd.done:
                return cmd
            rows = self._q("SELECT status FROM runs WHERE id = ?", (cmd.run_id,))
            if rows and rows[0][0] in TERMINAL_STATUSES and cmd.claimed is None:
                if self.reject_pending(cmd.run_id, ended_reason(rows[0][0]), claimed=False):
                    continue
            if time.monotonic() >= deadline:
                return cmd
            time.sleep(poll)


def _check_command(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    # The kinds and their payload rule are the protocol's (tuitrain.steering.kinds, a leaf).
    bad = kind_error(kind)
    if bad is not None:
        raise CommandRefused(bad)
    try:
        value = value_of(kind, payload)
    except ValueError as exc:
        raise CommandRefused(str(exc)) from None
    return payload if value is None else {**payload, VALUE_KEYS[kind]: value}
