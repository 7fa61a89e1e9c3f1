"""Shared pytest setup: keep torch to one thread in every process the tests start; the `e2e`
tier (tests that start a real training process; `slow` is its old name and still works both
ways); and the spawn guard: with TUITRAIN_E2E_GUARD=1, a test that is not marked e2e but starts
a training process fails loudly at teardown (how the tiers are kept honest:
`TUITRAIN_E2E_GUARD=1 python -m pytest -m "not e2e"`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Textual's pilot.pause() (and each key press) waits until the app's process looks idle,
# sampling its CPU time every 20 ms; tests wait on conditions (tests/tui/conftest.settle), so
# the idle check is only a yield point: sampled every 5 ms it costs a quarter (the quick tier:
# about 45 s less). A private module of Textual: without it the defaults stay.
try:
    import textual._wait as _textual_wait

    _textual_wait.SLEEP_GRANULARITY = 0.005
    _textual_wait.SLEEP_IDLE = _textual_wait.SLEEP_GRANULARITY / 20.0
except (ImportError, AttributeError):  # pragma: no cover - another Textual
    pass

TIER_MARKS = ("e2e", "slow")  # one tier, two names: either mark gets both


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Give every test marked e2e or slow both marks, before `-m` deselects (so `-m "not e2e"`
    also drops a test a branch still marks `slow`, and `-m slow` keeps selecting the e2e tier)."""
    for item in items:
        if any(item.get_closest_marker(m) for m in TIER_MARKS):
            for m in TIER_MARKS:
                if item.get_closest_marker(m) is None:
                    item.add_marker(m)


# --- the spawn guard -------------------------------------------------------------------------
# Every process a test starts inherits PYTEST_CURRENT_TEST and GUARD_TOKEN through its
# environment (the launcher, the CLI and the sweep runner all pass os.environ on), so a watcher
# thread that reads /proc can tell which test started a training process, however detached.

GUARD_VAR = "TUITRAIN_E2E_GUARD"
TOKEN_VAR = "TUITRAIN_TEST_SESSION"
# Command-line pieces of a process that trains (or is a training launcher).
TRAINER_SIGNS = (
    b"accelerate.commands.launch",
    b"accelerate launch",
    b"-m tuitrain.train",  # the trainer (and tuitrain.train.lanes), not `import tuitrain.train`
    b"torch.distributed.run",
    b"torchrun",
    b"_script.py",  # tests/integrations/*_script.py: DDP loops through the public API
)
# ...except the process that answers a prompt with a checkpoint (it trains nothing; a test of
# its refusals starts it and it exits before loading a model).
NOT_TRAINERS = (b"-m tuitrain.train.ask",)


class _Watcher(threading.Thread):
    """Polls /proc for processes carrying this session's token; records which test started
    each one that loads torch or looks like a trainer."""

    def __init__(self, token: str):
        super().__init__(daemon=True, name="e2e-guard")
        self.token = f"{TOKEN_VAR}={token}".encode()
        self.seen: set[tuple[str, str]] = set()  # (pid, starttime) already classified
        self.hits: dict[str, list[str]] = {}  # test nodeid -> command lines
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.scan()

    def scan(self) -> None:
        me = str(os.getpid())
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    start = fh.read().rsplit(b")", 1)[1].split()[19].decode()
                if (pid, start) in self.seen:
                    continue
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    env = fh.read().split(b"\0")
                if self.token not in env:
                    self.seen.add((pid, start))
                    continue
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").strip()
                trainer = any(s in cmd for s in TRAINER_SIGNS) and not any(
                    s in cmd for s in NOT_TRAINERS
                )
                if not trainer:
                    # A python script (an example, a test's helper script): a trainer once it
                    # loads torch. `python -c` one-liners are import checks (test_boundaries).
                    if b" -c " in cmd:
                        self.seen.add((pid, start))
                        continue
                    with open(f"/proc/{pid}/maps", "rb") as fh:
                        trainer = b"libtorch" in fh.read()
                    if not trainer:
                        continue  # look again next round: it may load torch later
                self.seen.add((pid, start))
                test = next(
                    (e.split(b"=", 1)[1] for e in env if e.startswith(b"PYTEST_CURRENT_TEST=")),
                    b"?",
                )
                node = test.decode(errors="replace").rsplit(" (", 1)[0]
                with self.lock:
                    self.hits.setdefault(node, []).append(cmd.decode(errors="replace")[:200])
            except (OSError, IndexError):
                continue

    def take(self, nodeid: str) -> list[str]:
        with self.lock:
            return self.hits.pop(nodeid, [])


_watcher: _Watcher | None = None
_flagged: dict[str, list[str]] = {}


def pytest_configure(config):
    global _watcher
    if os.environ.get(GUARD_VAR) and _watcher is None and os.path.isdir("/proc"):
        token = uuid.uuid4().hex
        os.environ[TOKEN_VAR] = token
        _watcher = _Watcher(token)
        _watcher.start()


def pytest_unconfigure(config):
    if _watcher is not None:
        _watcher.stop.set()


@pytest.fixture(autouse=True)
def _e2e_guard(request):
    """With the guard on: fail a test not marked e2e that started a training process."""
    yield
    if _watcher is None:
        return
    _watcher.scan()  # one more look, for a process started at the very end
    cmds = _watcher.take(request.node.nodeid)
    if cmds and request.node.get_closest_marker("e2e") is None:
        _flagged[request.node.nodeid] = cmds
        pytest.fail(
            f"{request.node.nodeid} starts a training process but is not marked e2e:\n  "
            + "\n  ".join(cmds[:3]),
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter):
    if _flagged:
        terminalreporter.section("tests that start a training process, not marked e2e")
        for node, cmds in _flagged.items():
            terminalreporter.write_line(f"{node}: {cmds[0]}")


@pytest.fixture
def procs():
    """Processes a test starts (append them): killed and reaped after it, whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


@pytest.fixture(scope="session")
def sft_trained(tmp_path_factory):
    """The short SFT demo run (tests/train/helpers.SFT_SHORT), trained once per session; tests
    that write to it take `sft_copy`."""
    from tests.train.helpers import train_sft

    return train_sft(tmp_path_factory.mktemp("sft-trained"))


@pytest.fixture
def sft_copy(sft_trained, tmp_path) -> tuple[Path, str]:
    """(runs dir, run id) of this test's own copy of the trained SFT run."""
    dst = tmp_path / "runs"
    shutil.copytree(sft_trained.runs_dir, dst)
    return dst, sft_trained.run_id
