"""Provides the TUI commands: bare `tuitrain` (runs list), `tuitrain edit` and `tuitrain watch`.

Textual is imported inside the handlers so other commands start fast.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands."""
    from tuitrain.cli import add_config_source

    p = sub.add_parser("edit", help="open the config editor (default: the bundled demo config)")
    add_config_source(p, required=False)
    p.set_defaults(handler=cmd_edit)

    p = sub.add_parser("watch", help="open the live monitor of a run (id or name)")
    p.add_argument("run", help="run id or unique name")
    p.set_defaults(handler=cmd_watch)


def _run(args: argparse.Namespace, **kwargs) -> int:
    from tuitrain.tui.app import TuitrainApp

    TuitrainApp(runs_dir=args.runs_dir, **kwargs).run()
    return 0


def cmd_home(args: argparse.Namespace) -> int:
    """Bare `tuitrain`: open the runs list."""
    return _run(args)


def cmd_edit(args: argparse.Namespace) -> int:
    """`tuitrain edit [CONFIG] [--env E] [--set k=v]`: open the editor."""
    from tuitrain.config.loader import config_path

    config = str(config_path(args.config)) if args.config else None  # pkg:tuitrain/configs/...
    return _run(args, start="edit", config=config, env=args.env, sets=args.sets)


def _check_runs(args: argparse.Namespace, refs: list[str]) -> list[str]:
    """Resolve run refs before the screen opens, so a typo is a clear CLI error."""
    from pathlib import Path

    from tuitrain.store import DB_NAME, RunNotFound, Store

    if not (Path(args.runs_dir) / DB_NAME).is_file():  # never create a database by reading
        names = ", ".join(repr(r) for r in refs)
        raise RunNotFound(
            f"no run {names}: no runs in {args.runs_dir} (no {DB_NAME} there); "
            "pass --runs-dir DIR where runs were started"
        )
    with Store(args.runs_dir) as store:  # RunNotFound names the runs dir and `tuitrain ls`
        return [store.get_run(r).id for r in refs]


def cmd_watch(args: argparse.Namespace) -> int:
    """`tuitrain watch RUN`: open the live monitor."""
    (run_id,) = _check_runs(args, [args.run])
    return _run(args, start="watch", run=run_id)
