"""Provides the check of --runs-dir before a command uses it: a clear error (and exit code) for a
folder that is missing, a file, or read-only, instead of an OSError or SQLite traceback later."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tuitrain.cli.exits import BAD_INPUT, NOT_FOUND, CommandError

DB_NAME = "tuitrain.db"  # tuitrain.store.DB_NAME, not imported: the store loads more than we need

# How each command uses the runs dir:
#   list:   it must exist (a listing of a folder that is not there is a mistake); no db is "none"
#   read:   it must hold a database (reading never creates one)
#   modify: read, and it must be writable (steering, stopping, deleting, resuming, branching)
#   create: created if missing; must be writable (starting runs, sweeps, races)
#   tui:    the TUI shows what is there; only a file in its place is refused
USES = {
    "ls": "list",
    "sweeps": "list",
    "show": "read",
    "export": "read",
    "watch": "read",
    "doctor": "read",
    "samples": "read",
    "resume": "modify",
    "stop": "modify",
    "rm": "modify",
    "ctl": "modify",
    "branch": "modify",
    "rerun": "modify",
    "ask": "modify",  # stores the answers as samples
    "run": "create",
    "sweep": "create",
    "lr-find": "create",
    "lr-race": "create",
    "edit": "tui",
    None: "tui",  # bare `tuitrain`
    "validate": None,
    "schema": None,
    "notify": None,  # its own checks: test logs beside the runs dir when it exists, log reads it
}


def use_of(args: argparse.Namespace) -> str | None:
    """The use `args`' command makes of the runs dir (some depend on the arguments)."""
    command = getattr(args, "command", None)
    use = USES.get(command, "read")
    if command == "lr-race" and args.source == "show" and not Path("show").is_file():
        return "list" if args.race is None else "read"
    if command == "sweeps" and args.ref:
        return "read"
    if command == "sweep" and (args.spec == "promote" or args.promote_ref is not None):
        return "modify"
    if command == "doctor" and args.rollback:
        return "modify"
    return use


def check(args: argparse.Namespace) -> None:
    """Raise CommandError when --runs-dir cannot serve the command."""
    use = use_of(args)
    if use is None:
        return
    d = Path(args.runs_dir).expanduser()
    shown = f"--runs-dir {args.runs_dir}"
    try:
        is_dir, exists = d.is_dir(), d.exists()
    except (OSError, ValueError) as exc:
        raise CommandError(f"{shown}: not a usable path ({exc})") from None
    if exists and not is_dir:
        raise CommandError(
            f"{shown} is a file, not a folder; fix: pass the folder that holds (or will hold) "
            f"{DB_NAME}"
        )
    if use == "tui":
        return
    if use == "create":
        _check_creatable(d, shown)
        return
    ref = _ref(args)
    what = f"no run {ref!r}: " if ref else ""
    if not exists:
        raise CommandError(
            f"{what}no runs in {d}: no such folder; fix: pass --runs-dir DIR where runs were "
            "started (`tuitrain run CONFIG` creates it)",
            NOT_FOUND,
        )
    db = d / DB_NAME
    if use == "list":
        return
    if not db.is_file():
        raise CommandError(
            f"{what}no runs in {d} (no {DB_NAME} there); fix: pass --runs-dir DIR where runs "
            "were started",
            NOT_FOUND,
        )
    if use == "modify":
        _check_writable(d, shown)


def _ref(args: argparse.Namespace) -> str | None:
    """The run (or sweep, race) the command names, for the not-found message."""
    for key in ("run", "ref", "race", "promote_ref"):
        value = getattr(args, key, None)
        if isinstance(value, str) and value:
            return value
    return None


def _check_creatable(d: Path, shown: str) -> None:
    if d.is_dir():
        _check_writable(d, shown)
        return
    parent = d.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CommandError(f"{shown}: cannot create it: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(
            f"{shown}: cannot create it: {parent} is read-only; fix: pass a folder you can write"
        )


def _check_writable(d: Path, shown: str) -> None:
    db = d / DB_NAME
    if not os.access(d, os.W_OK | os.X_OK) or (db.exists() and not os.access(db, os.W_OK)):
        raise CommandError(
            f"{shown} is read-only (runs and their database are written there); fix: make it "
            "writable, or pass --runs-dir DIR with a folder you can write",
            BAD_INPUT,
        )
