"""The package's layering, its import circles and its lint, checked as tests (CI runs them).

`.importlinter` at the repository root holds the contracts: the layers (each package imports only
those below it), no import circle between siblings at any depth, no ML stack in the TUI / CLI /
store / config / data, and no Textual in the trainer. ruff checks style and formatting.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_import_contracts_hold() -> None:
    done = _run(_tool("lint-imports"), "--no-cache", str(ROOT / ".importlinter"))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " 0 broken" in done.stdout.split("Contracts:")[-1], done.stdout[-4000:]


def test_ruff_check_passes() -> None:
    done = _run(_tool("ruff"), "check", "--no-cache", "tuitrain", "tests", "configs")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_format_is_applied() -> None:
    done = _run(_tool("ruff"), "format", "--check", "--no-cache", "tuitrain", "tests", "configs")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
