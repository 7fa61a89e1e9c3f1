"""Tests that the runnable examples in docs/integrations.md run as written and record their run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tuitrain.store import Store

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrations.md"


def examples() -> dict[str, str]:
    """The ```python blocks that open with `# example: NAME.py`."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    found = {}
    for code in blocks:
        m = re.match(r"# example: (\S+\.py)", code)
        if m:
            found[m.group(1)] = code
    return found


def test_the_doc_has_both_examples():
    assert set(examples()) == {
        *("custom_loop.py", "accelerate_loop.py", "accelerate_tracker.py", "hf_trainer.py")
    }  # accelerate_tracker.py is run by tests/integrations/test_accelerate_tracker.py


@pytest.mark.parametrize(
    ("script", "name", "metrics"),
    [
        pytest.param(
            "custom_loop.py",
            "my-loop",
            {"loss", "lr"},
            marks=[pytest.mark.e2e, pytest.mark.timeout(120)],
        ),
        pytest.param(
            "accelerate_loop.py",
            "my-accelerate-loop",
            {"loss", "lr"},
            marks=[pytest.mark.e2e, pytest.mark.timeout(120)],
        ),
        pytest.param(
            "hf_trainer.py",
            "tiny-gpt2",
            {"loss", "lr", "grad_norm", "eval_loss", "val_loss", "val_perplexity"},
            marks=[pytest.mark.e2e, pytest.mark.timeout(180)],
        ),
    ],
)
def test_example_runs_and_records_a_completed_run(tmp_path, script, name, metrics):
    (tmp_path / script).write_text(examples()[script])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Store(tmp_path / "runs") as store:
        run = store.get_run(name)
        assert run.status == "completed"
        assert metrics <= set(store.metric_names(run.id))
        assert run.summary["steps"] == store.last_step(run.id) > 0
