"""Provides `tuitrain notify test` (send a test message to every configured target, say which
worked) and `tuitrain notify log` (what was sent, when, and any delivery errors)."""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

EXIT_FAILED = 1  # a target did not take the test message, or nothing is configured
EXIT_SETTINGS = 2  # notify.yaml / TUITRAIN_NOTIFY cannot be used (the message says why)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `notify test` and `notify log`."""
    p = sub.add_parser(
        "notify",
        help="notifications: send a test message, list what was sent",
        description="Targets are Apprise URLs from TUITRAIN_NOTIFY (spaces or commas between "
        "them) or ~/.config/tuitrain/notify.yaml (TUITRAIN_NOTIFY_CONFIG names another file); "
        "they are never stored with a run and always printed redacted.",
    )
    p.set_defaults(handler=lambda args: _usage(p))
    s = p.add_subparsers(dest="notify_command", metavar="ACTION")
    t = s.add_parser(
        "test",
        help="send a test message to every configured target and say which worked",
        description="Exit codes: 0 every target took it, 1 one failed or none is configured, "
        "2 the settings cannot be used.",
    )
    t.set_defaults(handler=cmd_test)
    lg = s.add_parser("log", help="list what was sent, when, and delivery errors (newest last)")
    lg.add_argument(
        "--limit", type=int, default=30, metavar="N", help="the newest N entries (0: all)"
    )
    lg.add_argument("--format", choices=("text", "json"), default="text")
    lg.set_defaults(handler=cmd_log)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return EXIT_SETTINGS


def _settings():
    from tuitrain.notify.settings import NotifySettingsError, load

    try:
        return load()
    except NotifySettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_test(args: argparse.Namespace) -> int:
    """`tuitrain notify test`."""
    from dataclasses import replace

    from tuitrain.notify.deliver import Dispatcher
    from tuitrain.notify.log import NotifyLog, read
    from tuitrain.notify.message import sample
    from tuitrain.notify.settings import config_path

    settings = _settings()
    if settings is None:
        return EXIT_SETTINGS
    if not settings.configured:
        print(
            "no notification target is configured: set TUITRAIN_NOTIFY to an Apprise URL, e.g.\n"
            "  export TUITRAIN_NOTIFY=ntfy://ntfy.sh/YOUR-TOPIC\n"
            f"or list targets in {config_path()} (see README, Notifications)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    runs_dir = Path(args.runs_dir)
    # The attempt goes to RUNS_DIR/notify.log when that exists (else to a scratch folder).
    log_dir = runs_dir if runs_dir.is_dir() else Path(tempfile.mkdtemp(prefix="tuitrain-notify-"))
    log = NotifyLog(log_dir)
    results: dict[str, bool] = {}
    test = replace(settings, retries=0)  # one attempt each: the answer comes within timeout_s
    disp = Dispatcher(test, log, on_done=lambda name, n, ok: results.__setitem__(name, ok))
    n = sample(socket.gethostname())
    names = disp.targets_for(n)
    print(f"settings from {settings.source}; sending a test message to {len(names)} target(s)")
    t0 = time.monotonic()
    disp.put(n)
    disp.close(timeout=test.timeout_s + test.command_timeout_s + 5)
    errors = {}
    for e in read(log_dir):
        if e.get("key") == n.key and e.get("status") == "failed":
            errors[e["target"]] = e.get("error", "")
    ok = True
    for err in disp.errors:
        print(f"  FAILED  {err}")
        ok = False
    for name in names:
        if results.get(name):
            print(f"  ok      {name}")
        else:
            ok = False
            why = errors.get(name) or "no answer in time"
            print(f"  FAILED  {name}: {why}")
    print(f"done in {time.monotonic() - t0:.1f} s")
    return 0 if ok else EXIT_FAILED


def cmd_log(args: argparse.Namespace) -> int:
    """`tuitrain notify log`."""
    from tuitrain.notify.daemon import running_pid
    from tuitrain.notify.log import LOG_NAME, read

    runs_dir = Path(args.runs_dir)
    entries = read(runs_dir, args.limit or None)
    if args.format == "json":
        for e in entries:
            print(json.dumps(e))
        return 0
    pid = running_pid(runs_dir) if runs_dir.is_dir() else None
    state = f"running (pid {pid})" if pid else "not running (a launch starts it when configured)"
    print(f"notifier for {runs_dir}: {state}")
    if not entries:
        print(f"nothing sent yet ({runs_dir / LOG_NAME} is empty or missing)")
        return 0
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.get("time", 0)))
        what = e.get("event") or ""
        run = e.get("run") or ""
        line = f"{when}  {e.get('status', '?'):<10} {what:<14} {run:<16} {e.get('target', '')}"
        if e.get("title"):
            line += f"  {e['title']}"
        if e.get("error"):
            line += f"\n    error: {e['error']}"
        print(line.rstrip())
    return 0
