"""Provides the `tuitrain` command line: thin commands over the library; bare `tuitrain` opens the TUI.

Each area registers its own subcommands (config_cmds, run_cmds, train_cmds, tui_cmds,
sweep_cmds). Handlers import heavy modules lazily: the CLI never imports torch.
"""

from __future__ import annotations

import argparse
import sys

from tuitrain.cli import config_cmds, run_cmds, sweep_cmds, train_cmds, tui_cmds

EXIT_INVALID_CONFIG = 2
MODULES = (tui_cmds, config_cmds, train_cmds, run_cmds, sweep_cmds)


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    """The --runs-dir option every command takes."""
    p.add_argument(
        "--runs-dir",
        default="runs",
        metavar="DIR",
        help="runs directory holding tuitrain.db (default: ./runs)",
    )


def add_config_source(p: argparse.ArgumentParser, required: bool = True) -> None:
    """CONFIG plus --env and --set, shared by validate, run, edit and sweep."""
    p.add_argument("config", nargs=None if required else "?", help="config file (YAML or JSON)")
    p.add_argument("--env", default=None, help="apply the named overlay from the config's envs:")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. --set optimizer.lr=5e-5 (repeatable)",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tuitrain` console script."""
    from tuitrain.config.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        handler = tui_cmds.cmd_home
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    except KeyboardInterrupt:
        return 130
