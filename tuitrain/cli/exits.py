"""Provides the exit codes of every `tuitrain` command (README "Reliability" lists them)."""

from __future__ import annotations

OK = 0
FAILED = 1  # the run or the command failed (a run that ended failed/crashed, an internal error)
BAD_INPUT = 2  # bad input: an invalid config or argument, an unusable path, a request refused
TIMEOUT = 3  # `ctl --wait`: the trainer did not apply the command in time
NOT_FOUND = 4  # no such run, sweep, race or runs directory
INTERRUPTED = 130  # ended by Ctrl-C (128 + SIGINT, what a shell reports)
BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE): `tuitrain schema | head`

TABLE: tuple[tuple[int, str], ...] = (
    (OK, "ok"),
    (FAILED, "the run or the command failed"),
    (BAD_INPUT, "bad input: a config, argument or path that cannot be used, or a refused request"),
    (TIMEOUT, "timed out waiting (ctl --wait)"),
    (NOT_FOUND, "not found: no such run, sweep, race or runs directory"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
    (BROKEN_PIPE, "stdout closed by its reader"),
)


class CommandError(Exception):
    """A command ends with this message (printed as `error: ...`, no traceback) and exit code."""

    def __init__(self, message: str, code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code
