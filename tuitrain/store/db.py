"""Provides the SQLite connection setup, the schema with ordered forward migrations, and network-FS detection."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("tuitrain.store")

DB_NAME = "tuitrain.db"
BUSY_TIMEOUT_MS = 30_000  # a loaded 2-core box can hold a write for >10 s
# Rollup levels as bit shifts: buckets of 8, 64, 512, 4096 and 32768 steps. A ratio of 8
# between levels bounds the rows a series() read touches to ~64 per requested bucket.
ROLLUP_SHIFTS = (3, 6, 9, 12, 15)

# WAL needs shared-memory locking that these filesystems do not provide reliably.
NETWORK_FSTYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "cifs",
        "smb3",
        "smbfs",
        "fuse.sshfs",
        "sshfs",
        "ceph",
        "fuse.ceph",
        "fuse.cephfs",
        "gpfs",
        "beegfs",
        "9p",
        "afs",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
        "fuse.juicefs",
        "virtiofs",
    }
)


def connect(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Open the database in autocommit mode with WAL, synchronous=NORMAL and a busy timeout."""
    # isolation_level=None: we issue BEGIN ourselves, so no transaction stays open by accident.
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.warning("could not enable WAL on %s (journal_mode=%s)", path, mode)
    # NORMAL in WAL mode: a commit survives a process crash; only an OS crash may lose the last ones.
    conn.execute("PRAGMA synchronous=NORMAL")
    # After a burst (a big export or delete) the WAL file is truncated back to this size.
    conn.execute("PRAGMA journal_size_limit=67108864")
    migrate(conn)
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock at BEGIN (a deferred read-then-write fails under contention)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def loads(text: str | None, default: Any) -> Any:
    """A JSON column's value (default when NULL)."""
    return default if text is None else json.loads(text)


def dumps(obj: Any) -> str:
    """A JSON column's text; allow_nan keeps NaN/inf summaries (a diverged run) readable by Python's json."""
    return json.dumps(obj, default=str)


def is_locked_error(exc: BaseException) -> bool:
    """True for the transient 'database is locked' / 'busy' errors worth retrying."""
    msg = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


def _v1(conn: sqlite3.Connection) -> None:
    """Initial schema: runs, series (run+name -> id), metrics, rollup, events, commands."""
    import sqlite_utils  # lazy: only needed when the schema is created or migrated

    db = sqlite_utils.Database(conn)
    db["runs"].create(
        {
            "id": str,
            "name": str,
            "status": str,
            "config": str,
            "derived": str,
            "created": float,
            "started": float,
            "ended": float,
            "pid": int,
            "host": str,
            "heartbeat": float,
            "exit_reason": str,
            "summary": str,
            "sweep_id": str,
            "last_step": int,
        },
        pk="id",
        not_null={"name", "status", "created"},
    )
    db["runs"].create_index(["created"])
    db["runs"].create_index(["name"])
    db["runs"].create_index(["sweep_id"])
    db["series"].create(
        {"id": int, "run_id": str, "name": str}, pk="id", not_null={"run_id", "name"}
    )
    db["series"].create_index(["run_id", "name"], unique=True)
    # Metrics and rollups are clustered on (series, step) without a rowid: per-name step ranges
    # are one B-tree range scan and appends stay in order. sqlite-utils cannot say WITHOUT ROWID.
    conn.execute(
        "CREATE TABLE metrics (sid INTEGER NOT NULL, step INTEGER NOT NULL, value REAL,"
        " time REAL NOT NULL, PRIMARY KEY (sid, step)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE rollup (sid INTEGER NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL,"
        " vmin REAL, vmax REAL, last_step INTEGER NOT NULL, last_value REAL, n INTEGER NOT NULL,"
        " PRIMARY KEY (sid, level, bucket)) WITHOUT ROWID"
    )
    db["events"].create(
        {
            "id": int,
            "run_id": str,
            "time": float,
            "step": int,
            "kind": str,
            "message": str,
            "data": str,
        },
        pk="id",
        not_null={"run_id", "time", "kind"},
    )
    db["events"].create_index(["run_id", "id"])
    db["commands"].create(
        {
            "id": int,
            "run_id": str,
            "kind": str,
            "payload": str,
            "created": float,
            "status": str,
            "claimed": float,
            "finished": float,
            "applied_step": int,
            "reason": str,
        },
        pk="id",
        not_null={"run_id", "kind", "created", "status"},
    )
    db["commands"].create_index(["run_id", "status"])


SWEEP_COLUMNS = (
    "id", "name", "method", "metric", "direction", "n_trials", "parallel", "study_name", "storage",
    "spec", "spec_file", "status", "pid", "pid_start", "host", "created", "ended", "error", "trials",
    "importance",
)  # fmt: skip
SWEEP_JSON_COLUMNS = frozenset({"spec", "trials", "importance"})
SWEEPS_DIR = "sweeps"  # where sweeps were kept as JSON files before schema version 2


def _v2(conn: sqlite3.Connection) -> Callable[[], None]:
    """Liveness columns on runs (process start time, when the step last advanced, median step
    time), the sweeps table, and the import of the old <runs_dir>/sweeps/*.json records."""
    for col, kind in (("pid_start", "INTEGER"), ("step_advanced", "REAL"), ("step_time_s", "REAL")):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
    conn.execute(
        "CREATE TABLE sweeps (id TEXT PRIMARY KEY, name TEXT NOT NULL, method TEXT, metric TEXT,"
        " direction TEXT, n_trials INTEGER, parallel INTEGER, study_name TEXT, storage TEXT,"
        " spec TEXT, spec_file TEXT, status TEXT NOT NULL, pid INTEGER, pid_start INTEGER,"
        " host TEXT, created REAL NOT NULL, ended REAL, error TEXT, trials TEXT, importance TEXT)"
    )
    conn.execute("CREATE INDEX idx_sweeps_created ON sweeps (created)")
    conn.execute("CREATE INDEX idx_sweeps_name ON sweeps (name)")
    return _import_sweep_files(conn)


def _import_sweep_files(conn: sqlite3.Connection) -> Callable[[], None]:
    """Insert every readable sweeps/*.json; returns what renames them (*.json.migrated) after commit."""

    def put(data: dict, path: Path) -> bool:
        if not data.get("id") or not data.get("name"):
            return False
        row = {k: data.get(k) for k in SWEEP_COLUMNS}
        row["status"] = row["status"] or "running"
        row["created"] = row["created"] or path.stat().st_mtime
        put_sweep_row(conn, row, replace=False)
        return True

    return _import_json_files(conn, SWEEPS_DIR, put)


def _import_json_files(
    conn: sqlite3.Connection, folder_name: str, put: Callable[[dict, Path], bool]
) -> Callable[[], None]:
    """Offer every readable RUNS_DIR/<folder_name>/*.json object to `put` (True: imported);
    returns what renames the imported files (*.json.migrated), to run after the commit."""
    import json

    rows = conn.execute("PRAGMA database_list").fetchall()
    main = next((r[2] for r in rows if r[1] == "main"), "")
    folder = Path(main).parent / folder_name if main else None
    done: list[Path] = []
    for path in sorted(folder.glob("*.json")) if folder and folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not put(data, path):
                continue
        except (OSError, ValueError):
            continue  # a foreign or damaged file stays where it is, untouched
        done.append(path)

    def rename() -> None:
        for p in done:
            try:
                p.replace(p.with_name(p.name + ".migrated"))
            except OSError:
                log.warning("could not rename migrated record %s", p)

    return rename


def put_sweep_row(conn: sqlite3.Connection, row: dict, replace: bool = True) -> None:
    """Insert (or replace) one sweep row; spec, trials and importance are stored as JSON."""
    import json

    values = [
        json.dumps(row.get(c), default=str) if c in SWEEP_JSON_COLUMNS else row.get(c)
        for c in SWEEP_COLUMNS
    ]
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    conn.execute(
        f"{verb} INTO sweeps ({', '.join(SWEEP_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
        values,
    )


def _v3(conn: sqlite3.Connection) -> None:
    """Lineage: a branched run's parent run id and the parent step it continues from."""
    conn.execute("ALTER TABLE runs ADD COLUMN parent TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN fork_step INTEGER")
    conn.execute("CREATE INDEX idx_runs_parent ON runs (parent)")


def _v4(conn: sqlite3.Connection) -> None:
    """The trainer's phase between steps (`eval`, `save`) and since when: a long eval or save is
    not a stall."""
    conn.execute("ALTER TABLE runs ADD COLUMN phase TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN phase_since REAL")


RACES_DIR = "races"  # LR race records were JSON files here before schema version 5


def _v5(conn: sqlite3.Connection) -> Callable[[], None]:
    """LR races: one row per race (its whole record as JSON), in the same database as the runs
    and sweeps; RUNS_DIR/races/*.json records are imported (and renamed *.json.migrated)."""
    conn.execute(
        "CREATE TABLE races (id TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL,"
        " ended REAL, record TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX idx_races_created ON races (created)")
    return _import_race_files(conn)


def _import_race_files(conn: sqlite3.Connection) -> Callable[[], None]:
    """Insert every readable races/*.json; returns what renames them after the commit."""

    def put(rec: dict, path: Path) -> bool:  # noqa: ARG001 - the sweeps' put needs the path
        if not rec.get("race_id"):
            return False
        put_race_row(conn, rec, replace=False)
        return True

    return _import_json_files(conn, RACES_DIR, put)


def put_race_row(conn: sqlite3.Connection, rec: dict, replace: bool = True) -> None:
    """Insert (or replace) one race record (race_id, status, created, ended + the whole record)."""
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    conn.execute(
        f"{verb} INTO races (id, status, created, ended, record) VALUES (?, ?, ?, ?, ?)",
        (
            str(rec["race_id"]),
            str(rec.get("status") or "running"),
            rec.get("created"),
            rec.get("ended"),
            json.dumps(rec, default=str),
        ),
    )


def _v6(conn: sqlite3.Connection) -> None:
    """Generation samples: one row per answer the model gave to a prompt (at an evaluation, or
    asked of a checkpoint afterwards), with the reference answer, scores and decoding settings."""
    conn.execute(
        "CREATE TABLE samples (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step INTEGER,"
        " prompt_id TEXT NOT NULL, source TEXT NOT NULL, prompt TEXT NOT NULL, messages TEXT,"
        " reference TEXT, output TEXT NOT NULL, tokens INTEGER, seconds REAL, settings TEXT,"
        " exact_match REAL, similarity REAL, repetition REAL, created REAL NOT NULL)"
    )
    conn.execute("CREATE INDEX idx_samples_run ON samples (run_id, step, prompt_id)")


# Ordered forward migrations: MIGRATIONS[i] takes the schema from version i to i + 1. A migration
# may return a callable to run after the commit (file moves must not happen before it).
MIGRATIONS: list[Callable[[sqlite3.Connection], Callable[[], None] | None]] = [
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION; safe when several processes open a new DB at once."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return version
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this tuitrain ({SCHEMA_VERSION}); "
            "upgrade tuitrain"
        )
    after: list[Callable[[], None]] = []
    with immediate(conn):
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for i in range(version, SCHEMA_VERSION):
            then = MIGRATIONS[i](conn)
            if then is not None:
                after.append(then)
            conn.execute(f"PRAGMA user_version={i + 1}")
    for then in after:
        then()
    return SCHEMA_VERSION


def mount_fstype(path: Path, mounts_file: str = "/proc/mounts") -> str | None:
    """The filesystem type of the mount holding path (longest matching mount point), or None."""
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        # /proc/mounts escapes spaces in mount points as \040.
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, parts[2]
    return best_type


def network_fs_warning(fstype: str | None, path: Path | str) -> str | None:
    """The warning to show when fstype is a network filesystem (WAL locking is unsafe there), else None."""
    if not fstype or fstype.lower() not in NETWORK_FSTYPES:
        return None
    return (
        f"runs directory {path} is on a network filesystem ({fstype}): SQLite WAL locking is not "
        "reliable there and the database can be corrupted; use a local disk for --runs-dir "
        "(e.g. /tmp or a local scratch volume) and copy results afterwards"
    )
