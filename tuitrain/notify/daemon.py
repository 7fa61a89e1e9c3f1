"""Provides the notifier: one process per runs directory (a lock file keeps it single) that polls
the store and sends notifications, outside every trainer (so a kill -9 or an OOM kill is still
reported, with no TUI open); started detached in its own session by each launch, it survives the
SSH session and exits once no run, sweep or race has been live for a while."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
import time
from pathlib import Path

from tuitrain.notify.log import NotifyLog, sent_keys
from tuitrain.notify.settings import NotifySettingsError, Settings, load, scrub

LOCK_NAME = "notify.lock"
ENV_POLL = "TUITRAIN_NOTIFY_POLL_S"  # seconds between polls of the store (default 2)
ENV_IDLE = "TUITRAIN_NOTIFY_IDLE_S"  # exit after this long with nothing live (default 600)
POLL_S = 2.0
IDLE_S = 600.0


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise NotifySettingsError(
            f"{name}={raw!r} must be a positive number of seconds; fix or unset it"
        )
    return value


class Lock:
    """RUNS_DIR/notify.lock held with flock for the notifier's life; it holds the owner's pid."""

    def __init__(self, runs_dir: str | os.PathLike[str]) -> None:
        self.path = Path(runs_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> bool:
        """True when this process now holds the lock (False: another notifier runs)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def release(self) -> None:
        """Let the next notifier start."""
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def running_pid(runs_dir: str | os.PathLike[str]) -> int | None:
    """The pid of this runs directory's notifier, or None when none runs."""
    path = Path(runs_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def serve(runs_dir: str | os.PathLike[str], settings: Settings, poll_s: float = POLL_S,
          idle_s: float = IDLE_S, stop: threading.Event | None = None) -> int:  # fmt: skip
    """Run the notifier until nothing has been live for idle_s (or `stop` is set); 0 at once when
    another notifier holds the lock, nothing is configured, or RUNS_DIR has no database."""
    from tuitrain.notify.deliver import Dispatcher
    from tuitrain.notify.rules import Watcher
    from tuitrain.store import DB_NAME, Store

    runs_dir = Path(runs_dir).absolute()
    if not settings.configured or not (runs_dir / DB_NAME).is_file():
        return 0
    lock = Lock(runs_dir)
    if not lock.acquire():
        return 0
    stop = stop or threading.Event()
    log = NotifyLog(runs_dir)
    store = Store(runs_dir)
    dispatcher = Dispatcher(settings, log)
    watcher = Watcher(
        store, settings, sent_keys(runs_dir),
        on_suppress=lambda n: log.add("suppressed", "-", n, "rate limit of this run"),
    )  # fmt: skip
    log.add("started", "-", pid=os.getpid(), targets=[s.name for _, s in dispatcher.senders])
    idle_since: float | None = None
    failing = False
    try:
        while not stop.is_set():
            try:
                for n in watcher.poll():
                    dispatcher.put(n)
                failing = False
            except Exception as exc:  # a locked or damaged database: say so once, keep going
                if not failing:
                    log.add(
                        "error", "-", error=scrub(f"{type(exc).__name__}: {exc}", settings.targets)
                    )
                failing = True
            busy = watcher.live or not dispatcher.idle() or watcher.first
            now = time.monotonic()
            idle_since = None if busy else (idle_since or now)
            if idle_since is not None and now - idle_since >= idle_s:
                break
            stop.wait(poll_s)
    finally:
        dispatcher.close(timeout=30.0)
        log.add("stopped", "-", pid=os.getpid())
        store.close()
        lock.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m tuitrain.notify serve RUNS_DIR`: what a launch starts (exits at once when there
    is nothing to do)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "serve":
        print("usage: python -m tuitrain.notify serve RUNS_DIR", file=sys.stderr)
        return 2
    runs_dir = Path(argv[1])
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the SSH session ending must not end us
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        settings = load()
        poll_s, idle_s = _env_seconds(ENV_POLL, POLL_S), _env_seconds(ENV_IDLE, IDLE_S)
    except NotifySettingsError as exc:
        if (runs_dir / "tuitrain.db").is_file():
            NotifyLog(runs_dir).add("error", "-", error=f"notifier not started: {exc}")
        return 2
    try:
        return serve(runs_dir, settings, poll_s, idle_s, stop)
    except Exception as exc:  # noqa: BLE001 -- the log is where the user looks; never a secret
        NotifyLog(runs_dir).add(
            "error",
            "-",
            error=scrub(f"notifier stopped: {type(exc).__name__}: {exc}", settings.targets),
        )
        return 1
