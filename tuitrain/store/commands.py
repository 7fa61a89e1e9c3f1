"""Provides the steering-command side of Store: send, claim (exactly once), acknowledge, reject,
wait, and settle (reject the commands of an ended run that can never be applied)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuitrain.steering.kinds import VALUE_KEYS, kind_error, value_of
from tuitrain.store import liveness
from tuitrain.store.db import immediate
from tuitrain.store.models import (
    TERMINAL_STATUSES,
    Command,
    CommandRefused,
    InvalidValue,
    RunNotFound,
)

_CMD_COLS = "id, run_id, kind, payload, created, status, claimed, finished, applied_step, reason"


def _loads(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


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
        """All of the run's commands, oldest first (pending ones of an ended run settled first)."""
        rows = self._q(f"SELECT {_CMD_COLS} FROM commands WHERE run_id = ? ORDER BY id", (run_id,))
        if any(r[5] == "pending" for r in rows):
            run = self.get_run(run_id)  # type: ignore[attr-defined]
            if run.terminal and self.settle_commands(run):
                rows = self._q(
                    f"SELECT {_CMD_COLS} FROM commands WHERE run_id = ? ORDER BY id", (run_id,)
                )
        return [self._row_to_cmd(r) for r in rows]

    def settle_commands(self, run: Any) -> int:
        """Reject the run's pending commands that can no longer be applied (its trainer ended or
        crashed: `liveness.orphan_reason`); returns how many were rejected."""
        pending = self._q(
            "SELECT id, kind, payload, claimed FROM commands WHERE run_id = ? AND status = 'pending'",
            (run.id,),
        )
        if not pending:
            return 0
        now = time.time()
        reasons: dict[bool, str | None] = {}  # one liveness look-up per claimed / unclaimed
        done = 0
        for cid, kind, payload, claimed in pending:
            key = claimed is not None
            if key not in reasons:
                reasons[key] = liveness.orphan_reason(run, key, now, self.host)
            reason = reasons[key]
            if reason is None:
                continue
            with immediate(self.conn):
                cur = self.conn.execute(
                    "UPDATE commands SET status = 'rejected', finished = ?, reason = ?,"
                    " claimed = coalesce(claimed, ?) WHERE id = ? AND status = 'pending'",
                    (now, reason, now, cid),
                )
                if cur.rowcount:
                    done += 1
                    data = {"command_id": cid, "kind": kind, "payload": _loads(payload, {}), "status": "rejected"}  # fmt: skip
                    self._add_event(run.id, "command", f"command {cid} ({kind}) rejected: {reason}", None, data, now)  # type: ignore[attr-defined]  # fmt: skip
        return done

    def wait_command(self, cmd_id: int, timeout: float = 30.0, poll: float = 0.1) -> Command:
        """Poll until the command is applied or rejected, or timeout; returns it (still pending on timeout).

        A command of a run that ended or crashed before applying it is rejected here (with that
        reason), so nobody waits on it.
        """
        deadline = time.monotonic() + timeout
        while True:
            cmd = self.get_command(cmd_id)
            if cmd.done:
                return cmd
            run = self.get_run(cmd.run_id)  # type: ignore[attr-defined]
            if run.terminal and self.settle_commands(run):
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
