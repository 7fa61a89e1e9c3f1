"""Provides the `tuitrain` command line: thin commands over the library; bare `tuitrain` opens the TUI.

Each area registers its own subcommands (config_cmds, run_cmds, train_cmds, tui_cmds,
sweep_cmds). Handlers import heavy modules lazily: the CLI never imports torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from tuitrain.cli import (
    branch_cmds,
    config_cmds,
    doctor_cmds,
    errors,
    exits,
    lrfind_cmds,
    notify_cmds,
    run_cmds,
    runsdir,
    samples_cmds,
    sweep_cmds,
    train_cmds,
    tui_cmds,
)

EXIT_INVALID_CONFIG = exits.BAD_INPUT  # kept for callers of the old names
EXIT_BROKEN_PIPE = exits.BROKEN_PIPE
MODULES = (
    tui_cmds,
    config_cmds,
    train_cmds,
    run_cmds,
    sweep_cmds,
    doctor_cmds,
    samples_cmds,
    branch_cmds,
    lrfind_cmds,
    notify_cmds,
)


RUNS_DIR_HELP = "runs directory holding tuitrain.db (default: ./runs)"


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    """The --runs-dir option of the top-level parser (before the subcommand)."""
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help=RUNS_DIR_HELP)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand parser below `parser`, nested ones included."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in dict.fromkeys(action.choices.values()):  # aliases share one parser
                out.extend([p, *_subparsers(p)])
    return out


def ensure_runs_dir(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand `--runs-dir DIR` after its name too, as the README promises: the
    one definition of the option, so no command module adds its own.

    The subcommand's option defaults to SUPPRESS: it sets args.runs_dir only when given
    there, so `tuitrain --runs-dir X CMD` (the top-level option) keeps working; a later
    one wins. Done here, after every module registered, so new commands get it for free.
    """
    for p in _subparsers(parser):
        p.add_argument("--runs-dir", default=argparse.SUPPRESS, metavar="DIR", help=RUNS_DIR_HELP)


def add_config_source(p: argparse.ArgumentParser, required: bool = True) -> None:
    """CONFIG plus --env and --set, shared by validate, run, edit and sweep."""
    p.add_argument("config", nargs=None if required else "?", help="config file (YAML or JSON)")
    p.add_argument("--env", default=None, help="apply the named overlay from the config's envs:")
    add_sets(p)


def add_sets(
    p: argparse.ArgumentParser,
    help: str = "override a field, e.g. --set optimizer.lr=5e-5 (repeatable)",
) -> None:
    """--set KEY=VALUE (repeatable, into args.sets), shared by every command that edits a config."""
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="tuitrain", description="Terminal training monitor and tuner."
    )
    add_runs_dir(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in MODULES:
        mod.register(sub)
    ensure_runs_dir(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tuitrain` console script: run the command, turn every error into a
    message and an exit code (tuitrain.cli.exits); never a traceback unless TUITRAIN_DEBUG=1."""
    parser = build_parser()
    if sweep_cmds.wants_promote_help(sys.argv[1:] if argv is None else argv):
        print(sweep_cmds.promote_help(), end="")
        return exits.OK
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        handler = tui_cmds.cmd_home
    try:
        runsdir.check(args)
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except BrokenPipeError:
        # `tuitrain schema | head`: the reader left; end quietly, as Unix tools do (no traceback,
        # and none from the interpreter flushing stdout at exit either).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exits.BROKEN_PIPE
    except Exception as exc:
        code = errors.user_error(exc, args)
        if code is None:
            return errors.internal_error(exc, argv)
        return code
