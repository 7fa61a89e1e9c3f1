"""Provides sweep test helpers: a tiny base config and a harness that starts the real
`tuitrain` CLI with a time bound and kills every process group it (or its trials) started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "CUDA_VISIBLE_DEVICES": "",
}
# A tiny byte-level GPT on 20 kB of stdlib source: each trial is mostly interpreter start-up.
TINY = f"""\
extends: {REPO / "configs" / "demo.yaml"}
model:
  arch: {{hidden_size: 32, num_layers: 1, num_heads: 2, max_position_embeddings: 32}}
data: {{max_bytes: 20000, max_seq_length: 32}}
batch: {{size: 4}}
scheduler: {{warmup_ratio: 0.0}}
training: {{max_steps: 6, eval_every: 2, eval_max_batches: 1, log_every: 1, save_every: 100000}}
generation: {{enabled: false}}
"""


class Cli:
    """Runs `python -m tuitrain ...` in tmp_path; remembers every process group for cleanup."""

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path
        self.runs_dir = tmp_path / "runs"
        self.procs: list[subprocess.Popen] = []
        self.groups: list[int] = []  # other process groups to kill at teardown (detached sweeps)

    def write(self, name: str, text: str) -> Path:
        """Write a file into the test folder."""
        p = self.dir / name
        p.write_text(text)
        return p

    def start(self, *args: str, env: dict[str, str | None] | None = None) -> subprocess.Popen:
        """Start the CLI in its own session (so SIGINT reaches only it, as a test sends it);
        env entries override the environment (None: remove the variable)."""
        cmd = [sys.executable, "-m", "tuitrain", *args]
        env = {**os.environ, **ENV, "PYTHONPATH": str(REPO), **(env or {})}
        env = {k: v for k, v in env.items() if v is not None}
        p = subprocess.Popen(
            cmd,
            cwd=self.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def run(
        self, *args: str, timeout: float = 240, env: dict[str, str | None] | None = None
    ) -> tuple[int, str]:
        """Run the CLI to its end within `timeout` seconds; (exit code, output)."""
        p = self.start(*args, env=env)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            out, _ = p.communicate()
            pytest.fail(f"tuitrain {' '.join(args)} did not finish in {timeout} s:\n{out}")
        return p.returncode, out

    def trainer_groups(self) -> list[int]:
        """Process groups of every trainer launched under the runs dir."""
        return [json.loads(f.read_text())["pgid"] for f in self.runs_dir.glob("*/launch.json")]

    def run_processes(self) -> list[int]:
        """Live pids whose command line names this test's runs directory."""
        tag = os.fsencode(str(self.runs_dir))
        out = []
        for name in os.listdir("/proc"):
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if name.isdigit() and tag in fh.read():
                        out.append(int(name))
            except OSError:
                continue
        return out

    def log(self, run) -> str:
        """A run's train.log (for failure messages)."""
        p = self.runs_dir / run.id / "train.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else "(no train.log)"

    def kill_all(self) -> None:
        """SIGKILL every group we started (CLI and trainers), pass or fail, and every process
        whose command line names our runs directory: torchrun starts each rank in a session of
        its own, so the launcher's group does not hold them."""
        for pgid in [p.pid for p in self.procs] + self.groups + self.trainer_groups():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in self.run_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def wait_for(pred, timeout: float, what: str, poll: float = 0.3):
    """Poll pred() until truthy (returned) or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
