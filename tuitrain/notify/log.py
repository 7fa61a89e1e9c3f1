"""Provides the notify log: RUNS_DIR/notify.log, one JSON line per delivery outcome (sent, failed,
retrying, dropped, suppressed), with targets redacted; what `tuitrain notify log` lists and what
the notifier reads back so that a restart never sends the same notification twice."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

LOG_NAME = "notify.log"
MAX_BYTES = 2_000_000  # the log is cut to its newer half past this size (about 8,000 entries)


class NotifyLog:
    """Appends entries to RUNS_DIR/notify.log (thread-safe; one write per line)."""

    def __init__(self, runs_dir: str | os.PathLike[str]) -> None:
        self.path = Path(runs_dir) / LOG_NAME
        self._lock = threading.Lock()

    def add(self, status: str, target: str, n: Any = None, error: str = "", **extra: Any) -> None:
        """One entry: status of notification `n` at `target` (already redacted)."""
        entry: dict[str, Any] = {"time": time.time(), "status": status, "target": target}
        if n is not None:
            entry.update(event=n.event, key=n.key, run=n.run_name or n.run_id, title=n.title)
            if n.command:
                entry["command"] = n.command
            entry["delay_s"] = round(time.time() - n.time, 3)
        if error:
            entry["error"] = error
        entry.update(extra)
        line = json.dumps(entry, default=str) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
                    size = fh.tell()
                if size > MAX_BYTES:
                    self._shrink()
            except OSError:
                pass  # a full disk costs the log line, never a notification or the caller

    def _shrink(self) -> None:
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines(True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(lines[len(lines) // 2 :]), encoding="utf-8")
        os.replace(tmp, self.path)


def read(runs_dir: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, Any]]:
    """The log's entries, oldest first (the newest `limit` when given); unreadable lines skipped."""
    path = Path(runs_dir) / LOG_NAME
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out[-limit:] if limit else out


def sent_keys(runs_dir: str | os.PathLike[str]) -> set[str]:
    """Keys of every notification the log shows as handled (sent, failed for good, suppressed)."""
    return {e["key"] for e in read(runs_dir) if e.get("key") and e.get("status") != "retrying"}
