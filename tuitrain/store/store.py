"""Provides Store: runs, metrics readers, events, steering commands, sweeps and LR races over one SQLite DB per runs directory."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tuitrain.store.commands import CommandsMixin, ended_reason
from tuitrain.store.db import DB_NAME, connect, immediate, mount_fstype, network_fs_warning
from tuitrain.store.db import dumps as _dumps
from tuitrain.store.db import loads as _loads
from tuitrain.store.events import EventsMixin
from tuitrain.store.metrics import MetricsMixin
from tuitrain.store.models import (
    STATUSES,
    TERMINAL_STATUSES,
    InvalidValue,
    RunInfo,
    RunNotFound,
    StoreError,
)
from tuitrain.store.races import RaceTable
from tuitrain.store.samples import SampleTable
from tuitrain.store.sweeps import SweepTable

__all__ = ["NetworkFilesystemWarning", "Store"]

RUN_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")
_RUN_COLS = (
    "id, name, status, config, derived, created, started, ended, pid, host, heartbeat,"
    " exit_reason, summary, sweep_id, last_step, pid_start, step_advanced, step_time_s,"
    " parent, fork_step, phase, phase_since"
)


class NetworkFilesystemWarning(UserWarning):
    """The runs directory is on a network filesystem, where SQLite WAL locking is unreliable."""


def validate_run_id(run_id: str) -> str:
    """Return run_id if it is a safe directory name (letters, digits, '-', '_'), else raise InvalidValue."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise InvalidValue(
            f"run id {run_id!r} is not valid: ids are letters, digits, '-' and '_' "
            "(as generated, e.g. 20260101-120000-ab12); use `tuitrain ls` to see them"
        )
    return run_id


def new_run_id(now: float | None = None) -> str:
    """A fresh path-safe id: YYYYMMDD-HHMMSS-xxxx (UTC time, 4 random hex digits)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


class Store(MetricsMixin, CommandsMixin, EventsMixin):
    """<runs_dir>/tuitrain.db with one SQLite connection per thread: threads may share a Store,
    each thread's queries and transactions run on its own connection (no lock across them)."""

    def __init__(self, runs_dir: str | os.PathLike[str]) -> None:
        self.runs_dir = Path(runs_dir).expanduser().absolute()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.runs_dir / DB_NAME
        self.fs_warning = network_fs_warning(mount_fstype(self.runs_dir), self.runs_dir)
        if self.fs_warning:
            warnings.warn(self.fs_warning, NetworkFilesystemWarning, stacklevel=2)
        self.host = socket.gethostname()
        self._local = threading.local()
        # Registry of every thread's connection, so close() can close them all; the lock guards
        # this dict only, never a query.
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._conns_lock = threading.Lock()
        self._closed = False
        self.conn  # noqa: B018 -- open (and migrate) now: errors belong to the constructor
        self.sweeps = SweepTable(lambda: self.conn)
        self.races = RaceTable(lambda: self.conn)
        self.samples = SampleTable(lambda: self.conn)

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on its first use)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._open_conn()
        return c

    def _open_conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the store of {self.runs_dir} is closed; open a new Store")
        c = connect(self.path)
        me = threading.current_thread()
        with self._conns_lock:
            # Thread workers come and go (Textual starts a thread per worker run): close the
            # connections of threads that have ended so they do not pile up.
            for t in [t for t in self._conns if not t.is_alive()]:
                self._conns.pop(t).close()
            self._conns[me] = c
        self._local.conn = c
        return c

    def close(self) -> None:
        """Close every thread's connection."""
        with self._conns_lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            c.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        # Always fetchall: a half-read cursor keeps a read snapshot open and pins the WAL.
        return self.conn.execute(sql, tuple(params)).fetchall()

    def data_version(self) -> int:
        """A number that changes when another connection commits: a cheap "anything new?" poll."""
        return int(self._q("PRAGMA data_version")[0][0])

    # ---- runs ---------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        """The run's files directory, <runs_dir>/<run_id> (the id is validated; never leaves runs_dir)."""
        path = self.runs_dir / validate_run_id(run_id)
        # The id pattern already rules out separators and dots; this guards against a future change.
        if path.resolve().parent != self.runs_dir.resolve():
            raise InvalidValue(f"run id {run_id!r} points outside the runs directory")
        return path

    def create_run(
        self,
        config: Mapping[str, Any],
        derived: Mapping[str, Any],
        name: str | None = None,
        sweep_id: str | None = None,
        status: str = "queued",
        exact_name: bool = False,
        parent: str | None = None,
        fork_step: int | None = None,
    ) -> RunInfo:
        """Insert a new run record with a generated id. Names resolve to one run: a taken name
        gets the next free suffix (demo, demo-2, demo-3, ...); with exact_name a taken name is
        InvalidValue naming the run that holds it. No name: the id. Chosen inside the write
        transaction, so concurrent launches never share a name."""
        _check_status(status)
        now = time.time()
        for _ in range(20):
            run_id = new_run_id(now)
            try:
                with immediate(self.conn):
                    run_name = self._free_name(str(name), exact_name) if name else run_id
                    self.conn.execute(
                        "INSERT INTO runs (id, name, status, config, derived, created, summary,"
                        " sweep_id, parent, fork_step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (run_id, run_name, status, _dumps(dict(config)),
                         _dumps(dict(derived)), now, "{}", sweep_id, parent, fork_step),
                    )  # fmt: skip
                break
            except sqlite3.IntegrityError:
                continue  # id collision within the same second: draw again
        else:
            raise RuntimeError("could not allocate a unique run id")
        return self.get_run(run_id)

    def _free_name(self, name: str, exact: bool) -> str:
        """`name` if no run has it, else `name-N` past the highest N in use (call inside the
        write transaction); exact: a taken name is an error naming its run."""
        holder = self.conn.execute(
            "SELECT id, status FROM runs WHERE name = ? ORDER BY created LIMIT 1", (name,)
        ).fetchone()
        if holder is None:
            return name
        like = re.sub(r"([%_\\])", r"\\\1", name) + "-%"
        suffix = re.compile(re.escape(name) + r"-([0-9]{1,9})")
        used = [
            int(m.group(1))
            for (other,) in self.conn.execute(
                "SELECT name FROM runs WHERE name LIKE ? ESCAPE '\\'", (like,)
            )
            if (m := suffix.fullmatch(other))
        ]
        free = f"{name}-{max(used, default=1) + 1}"
        if exact:
            raise InvalidValue(
                f"run name {name!r} is taken by run {holder[0]} ({holder[1]}); "
                f"choose another name, or leave the name out to get {free!r}"
            )
        return free

    def _row_to_run(self, r: tuple) -> RunInfo:
        return RunInfo(
            id=r[0], name=r[1], status=r[2], config=_loads(r[3], {}), derived=_loads(r[4], {}),
            created=r[5], started=r[6], ended=r[7], pid=r[8], host=r[9], heartbeat=r[10],
            exit_reason=r[11], summary=_loads(r[12], {}), sweep_id=r[13], last_step=r[14],
            run_dir=self.runs_dir / r[0], pid_start=r[15], step_advanced=r[16], step_time_s=r[17],
            parent=r[18], fork_step=r[19], phase=r[20], phase_since=r[21],
        )  # fmt: skip

    def mark_ended_if(self, run: RunInfo, status: str, reason: str, now: float) -> bool:
        """Set a final status decided elsewhere (tuitrain.runs.liveness: the process is gone)
        only if the record still is as `run` was read (same status and pid), with an error event
        and its unclaimed commands rejected; True when it changed. A write, never done by a read."""
        _check_status(status)
        with immediate(self.conn):
            cur = self.conn.execute(
                "UPDATE runs SET status = ?, ended = ?, exit_reason = ?"
                " WHERE id = ? AND status = ? AND coalesce(pid, -1) = coalesce(?, -1)",
                (status, now, reason, run.id, run.status, run.pid),
            )
            if cur.rowcount:
                self._add_event(
                    run.id, "error", f"marked {status}: {reason}", run.last_step, None, now
                )
        if cur.rowcount:
            self.reject_pending(run.id, ended_reason(status), claimed=False)
        return bool(cur.rowcount)

    def get_run(self, ref: str) -> RunInfo:
        """The run with this id, else the one run with this name, else a unique id prefix; RunNotFound otherwise."""
        rows = self._q(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (ref,))
        if not rows:
            rows = self._q(f"SELECT {_RUN_COLS} FROM runs WHERE name = ?", (ref,))
            if len(rows) > 1:
                ids = ", ".join(r[0] for r in rows)
                raise RunNotFound(f"name {ref!r} matches {len(rows)} runs ({ids}); use the run id")
        if not rows and isinstance(ref, str) and len(ref) >= 4 and RUN_ID_RE.match(ref):
            like = ref.replace("_", r"\_") + "%"
            rows = self._q(f"SELECT {_RUN_COLS} FROM runs WHERE id LIKE ? ESCAPE '\\'", (like,))
            if len(rows) > 1:
                raise RunNotFound(
                    f"id prefix {ref!r} matches {len(rows)} runs; give more of the id"
                )
        if not rows:
            raise RunNotFound(
                f"no run with id or name {ref!r} in {self.runs_dir} (see `tuitrain ls`)"
            )
        return self._row_to_run(rows[0])

    def list_runs(self, sweep_id: str | None = None, limit: int | None = None) -> list[RunInfo]:
        """All runs (or one sweep's), newest first, as recorded (tuitrain.runs.liveness tells a
        dead one). limit: only the newest `limit` (the runs list's first screenful, before the rest)."""
        where, params = ("WHERE sweep_id = ?", (sweep_id,)) if sweep_id is not None else ("", ())
        if limit is not None:
            where, params = f"{where} ORDER BY created DESC, id DESC LIMIT ?", (*params, limit)
        else:
            where += " ORDER BY created DESC, id DESC"
        rows = self._q(f"SELECT {_RUN_COLS} FROM runs {where}", params)
        return [self._row_to_run(r) for r in rows]

    def run_fingerprints(self) -> list[tuple[str, tuple]]:
        """(id, fingerprint) of every run, newest first: small columns and JSON lengths only, so
        a list of thousands of runs can tell which rows changed without parsing any JSON."""
        rows = self._q(
            "SELECT id, name, status, started, ended, heartbeat, exit_reason, last_step, sweep_id,"
            " length(config), length(derived), length(summary), phase, phase_since FROM runs"
            " ORDER BY created DESC, id DESC"
        )
        return [(r[0], tuple(r[1:])) for r in rows]

    def mark_started(
        self, run_id: str, pid: int, host: str | None = None, pid_start: int | None = None
    ) -> None:
        """Status running, with the training process's pid, its start time (read from /proc when
        the pid is on this host and none is given) and host, and a fresh heartbeat."""
        now = time.time()
        host = host or self.host
        if pid_start is None and host == self.host:
            pid_start = _start_time(int(pid))
        with immediate(self.conn):
            cur = self.conn.execute(
                "UPDATE runs SET status = 'running', pid = ?, pid_start = ?, host = ?, started = ?,"
                " heartbeat = ?, ended = NULL, exit_reason = NULL, phase = NULL, phase_since = NULL"
                " WHERE id = ?",
                (int(pid), pid_start, host, now, now, run_id),
            )
        if not cur.rowcount:
            raise RunNotFound(f"no run with id {run_id!r} in {self.runs_dir}")

    def mark_launched(
        self,
        run_id: str,
        pid: int,
        pid_start: int | None = None,
        host: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Status queued with the launcher's pid, start time and host, in one write (a reader
        never sees a queued run with the pid of an earlier start)."""
        host = host or self.host
        if pid_start is None and host == self.host:
            pid_start = _start_time(int(pid))
        with immediate(self.conn):
            cur = self.conn.execute(
                "UPDATE runs SET status = 'queued', pid = ?, pid_start = ?, host = ?, ended = NULL,"
                " exit_reason = ? WHERE id = ?",
                (int(pid), pid_start, host, reason, run_id),
            )
        if not cur.rowcount:
            raise RunNotFound(f"no run with id {run_id!r} in {self.runs_dir}")

    def set_status(
        self,
        run_id: str,
        status: str,
        reason: str | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        """Set the status (a terminal one also sets ended); summary is merged into the stored one."""
        _check_status(status)
        now = time.time()
        with immediate(self.conn):
            rows = self.conn.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchall()
            if not rows:
                raise RunNotFound(f"no run with id {run_id!r} in {self.runs_dir}")
            merged = {**_loads(rows[0][0], {}), **(summary or {})}
            ended = now if status in TERMINAL_STATUSES else None
            self.conn.execute(
                "UPDATE runs SET status = ?, exit_reason = coalesce(?, exit_reason), summary = ?,"
                " ended = ? WHERE id = ?",
                (status, reason, _dumps(merged), ended, run_id),
            )
        if status in TERMINAL_STATUSES:
            # Unclaimed commands can never be applied now; claimed ones once the processes exit
            # (tuitrain.runs.liveness.settle_commands, which can look at processes).
            self.reject_pending(run_id, ended_reason(status), claimed=False)

    def update_run(
        self,
        run_id: str,
        derived: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
        pid: int | None = None,
    ) -> None:
        """Replace derived, merge summary, set pid: whichever are given."""
        with immediate(self.conn):
            rows = self.conn.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchall()
            if not rows:
                raise RunNotFound(f"no run with id {run_id!r} in {self.runs_dir}")
            if derived is not None:
                self.conn.execute(
                    "UPDATE runs SET derived = ? WHERE id = ?", (_dumps(dict(derived)), run_id)
                )
            if summary:
                merged = {**_loads(rows[0][0], {}), **summary}
                self.conn.execute(
                    "UPDATE runs SET summary = ? WHERE id = ?", (_dumps(merged), run_id)
                )
            if pid is not None:
                self.conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (int(pid), run_id))

    def set_phase(self, run_id: str, phase: str | None) -> None:
        """The trainer's phase between steps (`eval`, `save`; None: stepping), stamped now. The
        stall check gives a phase the first-step grace instead of the step-time threshold."""
        since = time.time() if phase else None
        with immediate(self.conn):
            cur = self.conn.execute(
                "UPDATE runs SET phase = ?, phase_since = ? WHERE id = ?", (phase, since, run_id)
            )
        if not cur.rowcount:
            raise RunNotFound(f"no run with id {run_id!r} in {self.runs_dir}")

    def set_notes(self, run_id: str, notes: str) -> None:
        """Replace the run's notes (config run.notes, as shown by the TUI and `show`)."""
        with immediate(self.conn):
            rows = self.conn.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchall()
            if not rows:
                raise RunNotFound(f"no run with id {run_id!r} in {self.runs_dir}")
            config = _loads(rows[0][0], {})
            run = config.get("run") if isinstance(config.get("run"), dict) else {}
            config["run"] = {**run, "notes": str(notes)}
            self.conn.execute("UPDATE runs SET config = ? WHERE id = ?", (_dumps(config), run_id))

    def delete_run(self, run_id: str, files: bool = True) -> None:
        """Delete the run's rows (metrics, rollups, events, commands, samples) and, with files, its directory."""
        with immediate(self.conn):
            sids = [
                r[0]
                for r in self.conn.execute(
                    "SELECT id FROM series WHERE run_id = ?", (run_id,)
                ).fetchall()
            ]
            for sid in sids:
                self.conn.execute("DELETE FROM metrics WHERE sid = ?", (sid,))
                self.conn.execute("DELETE FROM rollup WHERE sid = ?", (sid,))
            for table in ("series", "events", "commands", "samples"):
                self.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            cur = self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            if not cur.rowcount:
                raise RunNotFound(f"no run with id {run_id!r} in {self.runs_dir}")
        if files:
            d = self.run_dir(run_id)
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d)


def _start_time(pid: int) -> int | None:
    """/proc/PID/stat field 22 (start time in clock ticks), the stamp that tells this process from
    a later one with the same pid; None without /proc. Only the record's stamp: whether the
    process lives is tuitrain.runs.process's question."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise InvalidValue(f"status {status!r} is not one of: {', '.join(STATUSES)}")
