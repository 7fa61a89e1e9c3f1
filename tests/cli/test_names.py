"""Names resolve to one run: new runs get a free name (demo, demo-2, ...), an explicit taken name
is an error naming the run that holds it, and concurrent launches never share a name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuitrain.store import InvalidValue, Store

ROOT = Path(__file__).resolve().parents[2]


def test_taken_names_get_the_next_suffix(tmp_path):
    with Store(tmp_path) as s:
        names = [s.create_run({}, {}, name="demo").name for _ in range(3)]
        assert names == ["demo", "demo-2", "demo-3"]
        assert s.get_run("demo-2").name == "demo-2"
        assert s.get_run("demo").name == "demo"  # one run: no "use the run id"
        # past the highest suffix in use, even with gaps or a hand-picked one
        s.create_run({}, {}, name="demo-7", exact_name=True)
        assert s.create_run({}, {}, name="demo").name == "demo-8"
        # no name: the id
        r = s.create_run({}, {})
        assert r.name == r.id


def test_like_wildcards_in_names_are_literal(tmp_path):
    with Store(tmp_path) as s:
        s.create_run({}, {}, name="a_b")
        s.create_run({}, {}, name="axb-5")  # would match an unescaped LIKE 'a_b-%'
        s.create_run({}, {}, name="a%b-9")
        assert s.create_run({}, {}, name="a_b").name == "a_b-2"
        s.create_run({}, {}, name="a%b")
        assert s.create_run({}, {}, name="a%b").name == "a%b-10"
        assert s.create_run({}, {}, name="DEMO").name == "DEMO"  # names are case-sensitive
        s.create_run({}, {}, name="demo-2")
        assert s.create_run({}, {}, name="DEMO").name == "DEMO-2"


def test_an_explicit_taken_name_is_an_error_naming_the_run(tmp_path):
    with Store(tmp_path) as s:
        first = s.create_run({}, {}, name="mine", exact_name=True)
        with pytest.raises(InvalidValue) as exc:
            s.create_run({}, {}, name="mine", exact_name=True)
        assert first.id in str(exc.value) and "'mine-2'" in str(exc.value)
        assert len(s.list_runs()) == 1  # nothing was created


CONCURRENT = """
import sys, time
from tuitrain.store import Store
runs, n = sys.argv[1], int(sys.argv[2])
with Store(runs) as s:
    print("ready", flush=True)
    start = float(sys.stdin.readline())  # the same moment for every process, once all are up
    while time.time() < start:
        time.sleep(0.005)
    for _ in range(n):
        print(s.create_run({}, {}, name="demo").id, flush=True)
"""


def test_concurrent_launches_get_distinct_names(tmp_path):
    """Separate processes, each with its own connection, creating runs at the same moment."""
    Store(tmp_path).close()  # the schema exists before the race
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(tmp_path), "5"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    try:
        for p in procs:  # every process has its connection open before the start is set
            assert p.stdout.readline().strip() == "ready"
        start = time.time() + 0.5
        for p in procs:  # all are told before any is waited on
            p.stdin.write(f"{start}\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs)
    ids = [line for out in outs for line in out.split()]
    with Store(tmp_path) as s:
        names = [s.get_run(i).name for i in ids]
    assert len(ids) == 20
    assert sorted(names) == sorted(["demo", *(f"demo-{i}" for i in range(2, 21))])


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_with_a_taken_name_fails_before_launching(tmp_path):
    with Store(tmp_path) as s:
        holder = s.create_run({}, {}, name="taken")
    out = _cli(
        "run", "configs/demo.yaml", "--name", "taken", "--detach", "--runs-dir", str(tmp_path)
    )
    assert out.returncode == 2, out.stderr
    assert holder.id in out.stderr and "taken" in out.stderr
    assert "Traceback" not in out.stderr
    with Store(tmp_path) as s:
        assert [r.id for r in s.list_runs()] == [holder.id]  # no second run, no process


@pytest.mark.e2e
def test_launching_the_demo_twice_gives_demo_and_demo_2(tmp_path):
    """Real launches (tiny: one step), then `tuitrain show demo` finds one run."""
    runs = tmp_path / "runs"
    tiny = ["--set", "training.max_steps=2", "--set", "scheduler.warmup_steps=0"]
    tiny += ["--set", "data.max_bytes=20000", "--set", "generation.enabled=false"]
    ids = []
    try:
        for _ in range(2):
            out = _cli("run", "configs/demo.yaml", *tiny, "--detach", "--runs-dir", str(runs))
            assert out.returncode == 0, out.stderr
            ids.append(out.stdout.split()[-1])
        shown = _cli("show", "demo", "--format", "json", "--runs-dir", str(runs))
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["id"] == ids[0]
        with Store(runs) as s:
            assert [s.get_run(i).name for i in ids] == ["demo", "demo-2"]
    finally:
        for i in ids:  # no orphan trainers: stop them (SIGKILL after the grace period)
            _cli("stop", i, "--grace", "10", "--runs-dir", str(runs))
