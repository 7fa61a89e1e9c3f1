"""Provides sweep test helpers: a tiny base config, a harness that starts the real `tuitrain`
CLI with a time bound and kills every process group it (or its trials) started, a real 1-trial
sweep with checkpoints (promo_sweep), and a deterministic 4-trial sweep built without training
(build_sweep) for the screens' pilot and snapshot tests."""

from __future__ import annotations

import json
import os
import shutil
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


def _start_time(pid: int) -> int | None:
    """The process's start time (/proc/PID/stat field 22, as launch.json records it), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


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

    def own_trainer_groups(self) -> list[int]:
        """trainer_groups whose leader is still the recorded launcher (same start time): a
        launch.json copied from a session's sweep, or one whose group ended long ago, never
        names a group that reused the pid (ranks outliving their launcher are found by
        run_processes)."""
        groups = []
        for f in self.runs_dir.glob("*/launch.json"):
            info = json.loads(f.read_text())
            if _start_time(info["pgid"]) == info.get("start"):
                groups.append(info["pgid"])
        return groups

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
        for pgid in [p.pid for p in self.procs] + self.groups + self.own_trainer_groups():
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


PROMO_SWEEP = """\
name: promo
base: base.yaml
method: grid
space:
  optimizer.lr: [0.002]
set: [training.max_steps=6, {save}]
"""


def promo_sweep(cli: Cli, save: str = "training.save_every=3"):
    """Run a real 1-trial grid sweep (the `cli` fixture's tiny.yaml at 12 steps, each trial cut
    to 6 by the sweep's set:, `save` added); its SweepRecord."""
    from tuitrain.sweep.records import list_sweeps

    cli.write("base.yaml", "extends: tiny.yaml\ntraining: {max_steps: 12}\n")
    cli.write("s.yaml", PROMO_SWEEP.format(save=save))
    rc, out = cli.run("sweep", "s.yaml", "--runs-dir", "runs")
    assert rc == 0, out
    (rec,) = list_sweeps(cli.runs_dir)
    return rec


def promo_copy(cli: Cli, trained: Path):
    """promo_sweep's result without running it again: the folder of a session's promo_sweep
    (sweep files, runs dir with the database, the trial's run folder and checkpoints) copied
    into this test's folder; its SweepRecord. The store finds run folders as runs_dir/<id> and
    the sweep's spec file is relative to the folder, so the copy stands on its own."""
    from tuitrain.sweep.records import list_sweeps

    shutil.copytree(trained, cli.dir, dirs_exist_ok=True)
    (rec,) = list_sweeps(cli.runs_dir)
    return rec


# build_sweep's trials: (lr, num_layers, state, val_loss, run status, complete checkpoints).
FIXTURE_TRIALS = [
    (1e-3, 1, "complete", 3.5, "completed", (3, 6)),
    (1e-2, 2, "complete", 2.25, "completed", (3, 6)),
    (1e-6, 1, "pruned", 5.4, "pruned", ()),  # pruned at step 2, before its first save
]
FIXTURE_SETS = ["training.max_steps=6", "training.save_every=3"]
PRUNE_REASON = "pruned by sweep demo at step 2: val_loss worse than the median of earlier trials"


def build_sweep(runs_dir: Path, folder: Path | None = None):
    """A finished 4-trial sweep: 2 complete, 1 pruned (with its run's status reason), 1 invalid
    (never ran); no process is started. With `folder`, also what promote reads: the sweep file's
    base (tiny.yaml at 12 steps) in folder, and each trial run's config.yaml and complete
    checkpoint markers (steps 3 and 6 for the complete trials, none for the pruned one)."""
    import os

    from tuitrain.config import load_config, save_yaml, to_dict
    from tuitrain.runs.lineage import CKPT_DIR, DONE_MARK
    from tuitrain.store import Store
    from tuitrain.sweep import records
    from tuitrain.sweep.records import SweepRecord, TrialRecord

    spec = {
        "name": "demo", "base": "base.yaml", "method": "tpe", "set": FIXTURE_SETS,
        "space": {"optimizer.lr": {"type": "loguniform", "low": 1e-6, "high": 1e-1},
                  "model.arch.num_layers": {"type": "int", "low": 1, "high": 3}},
        "objective": {"metric": "val_loss", "mode": "min"}, "n_trials": 4,
    }  # fmt: skip
    rec = SweepRecord(
        id=records.new_sweep_id("demo"), name="demo", method="tpe", metric="val_loss", direction="minimize",
        n_trials=4, parallel=1, study_name="s", storage="sqlite://", pid=os.getpid(), status="completed",
        spec=spec, spec_file=str(folder / "demo.yaml") if folder else None,
        importance={"optimizer.lr": 0.9, "model.arch.num_layers": 0.1},
    )  # fmt: skip
    if folder is not None:
        (folder / "tiny.yaml").write_text(TINY)
        (folder / "base.yaml").write_text("extends: tiny.yaml\ntraining: {max_steps: 12}\n")
    with Store(runs_dir) as s:
        for n, (lr, layers, state, value, status, ckpts) in enumerate(FIXTURE_TRIALS):
            params = {"optimizer.lr": lr, "model.arch.num_layers": layers}
            if folder is None:
                config, derived = {"optimizer": {"lr": lr}}, {"total_steps": 10}
            else:
                sets = [*FIXTURE_SETS, *(f"{k}={v}" for k, v in params.items())]
                cfg = load_config(folder / "base.yaml", sets=sets)
                config, derived = to_dict(cfg.config), cfg.derived.as_dict()
            run = s.create_run(config, derived, name=f"demo-t{n:03d}", sweep_id=rec.id)
            s.log_metrics(run.id, [(2, "val_loss", value, 0.0)])
            s.set_status(run.id, status, PRUNE_REASON if status == "pruned" else None)
            if folder is not None:
                save_yaml(cfg.config, s.run_dir(run.id) / "config.yaml")
                for step in ckpts:
                    d = s.run_dir(run.id) / CKPT_DIR / f"step-{step}"
                    d.mkdir(parents=True)
                    (d / DONE_MARK).write_text(f'{{"step": {step}}}')
            rec.trials.append(
                TrialRecord(
                    n,
                    params,
                    run_id=run.id,
                    run_name=run.name,
                    state=state,
                    value=value,
                    run_status=status,
                    pruned_step=2 if state == "pruned" else None,
                )
            )
    rec.trials.append(
        TrialRecord(
            3,
            {"optimizer.lr": 1e-4, "model.arch.num_layers": 3},
            state="failed",
            error="model.arch.num_heads must divide hidden_size",
        )
    )
    records.save(rec, runs_dir)
    return rec


def wait_for(pred, timeout: float, what: str, poll: float = 0.3):
    """Poll pred() until truthy (returned) or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
