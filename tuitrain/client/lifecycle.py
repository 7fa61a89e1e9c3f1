"""Provides end-of-process handling for runs reported from a user's script (atexit + excepthook).

A script that crashes, or forgets to finish its run, still leaves a truthful status behind:
failed (with the exception) when an exception escaped, completed otherwise.
"""

from __future__ import annotations

import atexit
import sys
import threading
import weakref
from typing import Any, Protocol


class Finishable(Protocol):
    """Anything with finish(status, reason=...) and a `finished` flag (optionally exit_status /
    exit_reason: the status to end with at exit instead of completed / failed)."""

    finished: bool

    def finish(self, status: str, *, reason: str | None = None) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False
_uncaught: list[BaseException] = []


def track(obj: Finishable) -> None:
    """Finish `obj` at interpreter exit unless it has finished by then."""
    global _installed
    _live.add(obj)
    with _lock:
        if _installed:
            return
        _installed = True
        previous = sys.excepthook

        def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
            _uncaught.append(exc)
            previous(exc_type, exc, tb)

        sys.excepthook = hook
        atexit.register(_finish_all)


def _finish_all() -> None:
    if _uncaught:
        exc = _uncaught[0]
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
    else:
        status, reason = "completed", "process exited without finish()"
    for obj in list(_live):
        if obj.finished:
            continue
        # An object that knows better (e.g. a run ended by SIGTERM -> stopped) says so.
        own = getattr(obj, "exit_status", None)
        try:
            obj.finish(own or status, reason=getattr(obj, "exit_reason", None) if own else reason)
        except Exception as err:  # noqa: BLE001 - at exit there is no one to raise to
            print(f"tuitrain: could not finish run {obj!r}: {err}", file=sys.stderr)
