"""`--runs-dir DIR` works before and after every registered subcommand (found by introspection)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuitrain.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) for every subcommand, nested ones included."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                out.append(((*prefix, name), p))
                out.extend(_commands(p, (*prefix, name)))
    return out


def _positionals(p: argparse.ArgumentParser) -> list[str]:
    """Values for the required positionals of `p` (a valid choice where there are choices)."""
    vals = []
    for a in p._actions:
        if a.option_strings or isinstance(a, argparse._SubParsersAction):
            continue
        if a.nargs in ("?", "*"):
            continue
        n = a.nargs if isinstance(a.nargs, int) else 1
        vals.extend([str(next(iter(a.choices))) if a.choices else "x"] * n)
    return vals


COMMANDS = _commands(build_parser())


def test_commands_are_found():
    names = {c[0] for c, _ in COMMANDS}
    # the introspection must see the commands the README lists (and any added later)
    assert {"edit", "watch", "validate", "schema", "run", "resume", "stop", "ls", "ctl"} <= names


@pytest.mark.parametrize(
    "words,sub", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_runs_dir_before_and_after_the_subcommand(words, sub, tmp_path):
    parser = build_parser()
    pos = _positionals(sub)
    d1, d2 = str(tmp_path / "a"), str(tmp_path / "b")
    after = parser.parse_args([*words, *pos, "--runs-dir", d1])
    assert after.runs_dir == d1
    before = parser.parse_args(["--runs-dir", d2, *words, *pos])
    assert before.runs_dir == d2
    both = parser.parse_args(["--runs-dir", d2, *words, "--runs-dir", d1, *pos])
    assert both.runs_dir == d1  # the later one wins
    assert parser.parse_args([*words, *pos]).runs_dir == "runs"
    assert "--runs-dir" in sub.format_help()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_watch_stop_resume_take_runs_dir_after(tmp_path):
    """Three of the four that refused it, run for real against a store in DIR (the editor opens a
    screen, so `edit` is covered by the parser test above)."""
    from tuitrain.store import Store

    runs = tmp_path / "elsewhere"
    with Store(runs) as store:
        run = store.create_run({"run": {"name": "r"}}, {}, name="queued-one")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    stop = _cli("stop", run.id, "--runs-dir", str(runs), "--grace", "1", cwd=cwd)
    assert stop.returncode == 0, stop.stderr
    assert "is not running" in stop.stdout
    resume = _cli("resume", "queued-one", "--runs-dir", str(runs), cwd=cwd)
    assert "unrecognized" not in resume.stderr
    assert resume.returncode == 1 and "checkpoint" in resume.stderr.lower(), resume.stderr
    watch = _cli("watch", "nosuch", "--runs-dir", str(runs), cwd=cwd)
    assert watch.returncode != 0 and "nosuch" in watch.stderr and str(runs) in watch.stderr
    assert not (cwd / "runs").exists()  # nothing fell back to ./runs


def test_output_into_a_closed_pipe_is_quiet():
    """`tuitrain schema | head -c 10` (50 KB of output): no BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuitrain", "schema"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(10)
    proc.stdout.close()  # the reader goes away before the output is all written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141)
    assert "Traceback" not in err and "BrokenPipe" not in err
