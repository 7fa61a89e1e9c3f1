"""Provides how the CLI shows an error: a user's mistake as one `error:` line with its exit code,
and anything else (a bug) as one line pointing at a log file holding the traceback."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tuitrain.cli import exits

DEBUG_ENV = "TUITRAIN_DEBUG"  # =1: print the traceback of an internal error on stderr


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def user_error(exc: Exception, args: argparse.Namespace | None = None) -> int | None:
    """Print a user mistake the way every command does and give its exit code; None for a bug.

    The exception types are imported here, once raised: importing tuitrain.config.errors loads
    the config package (pydantic schema, ~0.3 s), which bare `tuitrain` must not pay before the
    runs list opens."""
    from tuitrain.config.errors import ConfigError
    from tuitrain.store.models import InvalidValue, RunNotFound, StoreError

    runs_dir = getattr(args, "runs_dir", None)
    if isinstance(exc, exits.CommandError):
        _say(f"error: {exc}")
        return exc.code
    if isinstance(exc, ConfigError):
        _say(str(exc))
        return exits.BAD_INPUT
    if isinstance(exc, RunNotFound):
        _say(f"error: {exc}")
        return exits.NOT_FOUND
    if isinstance(exc, InvalidValue):  # a bad argument the store refused (e.g. a taken --name)
        _say(f"error: {exc}")
        return exits.BAD_INPUT
    if isinstance(exc, StoreError):
        _say(f"error: {exc}")
        return exits.FAILED
    if type(exc).__name__ == "SweepNotFound":
        _say(f"error: {exc}")
        return exits.NOT_FOUND
    if isinstance(exc, sqlite3.Error):
        return _sqlite_error(exc, runs_dir)
    if type(exc).__module__.split(".")[0] == "jinja2":
        # The data package names the field where it renders; this is the net for the rest.
        _say(
            f"error: data.chat_template: the chat template failed to render "
            f"({type(exc).__name__}: {_first_line(exc)}); fix: correct the template, or leave "
            "data.chat_template empty to use the tokenizer's own"
        )
        return exits.BAD_INPUT
    if isinstance(exc, OSError) and exc.filename is not None:
        _say(f"error: {exc.filename}: {exc.strerror or _first_line(exc)}")
        return exits.FAILED
    return None


def _sqlite_error(exc: sqlite3.Error, runs_dir: str | None) -> int:
    where = f"the runs dir {runs_dir}" if runs_dir else "the runs dir"
    msg = _first_line(exc)
    low = msg.lower()
    if runs_dir and Path(runs_dir).is_dir() and not os.access(runs_dir, os.W_OK):
        _say(
            f"error: {where} is read-only and its database cannot be used there (SQLite: {msg});"
            " fix: make it writable (SQLite writes beside tuitrain.db even to read), or copy the "
            "folder somewhere writable and pass that as --runs-dir"
        )
        return exits.BAD_INPUT
    if "readonly" in low or "read-only" in low:
        _say(
            f"error: {where} is read-only (SQLite: {msg}); fix: make it writable, or pass "
            "--runs-dir DIR with a folder you can write"
        )
        return exits.BAD_INPUT
    if "not a database" in low or "malformed" in low or "unable to open" in low:
        _say(
            f"error: {where}: its database cannot be used (SQLite: {msg}); fix: pass --runs-dir "
            "DIR with a tuitrain runs folder"
        )
        return exits.BAD_INPUT
    _say(f"error: {where}: the database failed (SQLite: {msg})")
    return exits.FAILED


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def log_dir() -> Path:
    """Where internal errors' tracebacks go: $XDG_STATE_HOME/tuitrain (~/.local/state/tuitrain)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "tuitrain"


def internal_error(exc: BaseException, argv: list[str] | None) -> int:
    """A bug: one line on stderr; the traceback in a log file (or on stderr with TUITRAIN_DEBUG=1)."""
    text = "".join(traceback.format_exception(exc))
    head = f"tuitrain: internal error: {type(exc).__name__}: {_first_line(exc)}"
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        _say(text.rstrip())
        _say(head)
        return exits.FAILED
    command = " ".join(["tuitrain", *(sys.argv[1:] if argv is None else argv)])
    record = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {command}\n{text}\n"
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        path = folder / "errors.log" if folder == log_dir() else folder / "tuitrain-errors.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(record)
        except OSError:
            continue
        _say(f"{head}\n  the traceback is in {path} ({DEBUG_ENV}=1 prints it); please report it")
        return exits.FAILED
    _say(f"{head}\n  ({DEBUG_ENV}=1 prints the traceback); please report it")
    return exits.FAILED
