"""Tests of `tuitrain ls/show/export/rm/ctl` against a real store (ctl --wait against a real trainer-like process)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tuitrain.cli import export_cmds, main, run_cmds
from tuitrain.store import Store


@pytest.fixture
def runs(tmp_path):
    d = tmp_path / "runs"
    s = Store(d)
    done = s.create_run({"optimizer": {"lr": 5e-5}}, {"total_steps": 300}, name="done run")
    s.mark_started(done.id, os.getpid())
    s.log_metrics(
        done.id, [(i, n, 1.0 / i, 1000.0 + i) for i in range(1, 301) for n in ("loss", "lr")]
    )
    s.log_metrics(done.id, [(301, "loss", math.nan, 2000.0)])
    s.add_event(done.id, "eval", "evaluated", step=300)
    s.set_status(done.id, "completed", summary={"best_metric": "val_loss", "best_value": 0.25})
    live = s.create_run({}, {}, name="live", sweep_id="sw-1")
    s.mark_started(live.id, os.getpid())
    s.close()
    return d, done.id, live.id


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_ls_table_and_json(runs, capsys):
    d, done, live = runs
    rc, out, _ = cli(capsys, "ls", "--runs-dir", str(d))
    assert rc == 0 and "done run" in out and "completed" in out and "301/300" in out
    assert "val_loss=0.25" in out
    rc, out, _ = cli(capsys, "--runs-dir", str(d), "ls", "--format", "json")
    items = json.loads(out)
    assert [i["id"] for i in items] == [live, done]
    for key in ("id", "name", "status", "pid", "sweep", "step", "created"):
        assert key in items[0]
    assert (
        items[0]["sweep"] == "sw-1" and items[0]["status"] == "running" and items[1]["step"] == 301
    )
    rc, out, _ = cli(capsys, "ls", "--runs-dir", str(d), "--sweep", "sw-1", "--format", "json")
    assert [i["id"] for i in json.loads(out)] == [live]


def test_show(runs, capsys):
    d, done, _ = runs
    store = Store(d)
    cid = store.send_command(runs[2], "eval")
    store.close()
    rc, out, _ = cli(capsys, "show", "--runs-dir", str(d), "done run")
    assert rc == 0
    for text in ("status: completed", "optimizer.lr: 5e-05", "total_steps: 300", "best_value: 0.25",
                 "loss: nan (step 301)", "lr: 0.00333333 (step 300)", "eval", "evaluated"):  # fmt: skip
        assert text in out, text
    rc, out, _ = cli(capsys, "show", "--runs-dir", str(d), runs[2], "--format", "json")
    doc = json.loads(out)
    assert doc["commands"][0]["id"] == cid and doc["commands"][0]["status"] == "pending"
    rc, _, err = cli(capsys, "show", "--runs-dir", str(d), "no-such-run")
    assert rc == run_cmds.EXIT_NOT_FOUND and "no-such-run" in err


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_all_points_in_chunks(runs, capsys, monkeypatch, tmp_path, fmt):
    d, done, _ = runs
    monkeypatch.setattr(export_cmds, "EXPORT_CHUNK_STEPS", 7)  # many chunk boundaries
    out_file = tmp_path / f"out.{fmt}"
    rc, _, err = cli(
        capsys, "export", "--runs-dir", str(d), done, "--format", fmt, "-o", str(out_file)
    )
    assert rc == 0 and "601 points" in err
    text = out_file.read_text()
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
        assert set(rows[0]) == {"run", "step", "name", "value", "time"}
        assert rows[-1] == {"run": done, "step": 301, "name": "loss", "value": None, "time": 2000.0}
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows[-1]["value"] == "nan" and rows[0]["time"] == "1001.0"
    assert len(rows) == 601
    assert [(int(r["step"]), r["name"]) for r in rows[:3]] == [(1, "loss"), (1, "lr"), (2, "loss")]
    rc, out, _ = cli(
        capsys, "export", "--runs-dir", str(d), done, "--format", "jsonl", "--name", "lr"
    )
    assert len(out.splitlines()) == 300


def test_rm_asks_and_refuses_running(runs, capsys, monkeypatch):
    d, done, live = runs
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    rc, _, err = cli(capsys, "rm", "--runs-dir", str(d), done)
    assert rc == 1 and "not deleted" in err
    rc, _, err = cli(capsys, "rm", "--runs-dir", str(d), live, "--yes")
    assert rc == 1 and "is running" in err and "--force" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    rc, out, _ = cli(capsys, "rm", "--runs-dir", str(d), done)
    assert rc == 0 and f"deleted run {done}" in out
    rc, _, _ = cli(capsys, "rm", "--runs-dir", str(d), live, "--yes", "--force")
    assert rc == 0
    rc, out, _ = cli(capsys, "ls", "--runs-dir", str(d), "--format", "json")
    assert json.loads(out) == []


@pytest.mark.parametrize("text", ["5e-5", "5E-5", "5.0e-05", "0.00005"])
def test_ctl_accepts_scientific_notation(runs, capsys, text):
    d, _, live = runs
    rc, out, _ = cli(capsys, "ctl", "--runs-dir", str(d), live, "set-lr", text)
    assert rc == 0 and out.startswith("command ")
    cid = int(out.split()[1].rstrip(":"))
    with Store(d) as s:
        assert s.get_command(cid).payload == {"lr": 5e-5}


@pytest.mark.parametrize(
    "argv,match",
    [
        (["set-lr", "abc"], "set-lr LR must be a number"),
        (["set-lr", "0"], "positive"),
        (["scale-lr", "inf"], "positive"),
        (["set-lr"], "needs a value"),
        (["stop", "3"], "takes no value"),
        (["eval", "--wait", "--timeout", "0"], "--timeout"),
    ],
)
def test_ctl_bad_arguments_exit_2(runs, capsys, argv, match):
    d, _, live = runs
    with pytest.raises(SystemExit) as exc:
        main(["ctl", "--runs-dir", str(d), live, *argv])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err
    with Store(d) as s:
        assert s.commands(live) == []


def test_ctl_refuses_ended_run(runs, capsys):
    d, done, _ = runs
    rc, _, err = cli(capsys, "ctl", "--runs-dir", str(d), done, "stop")
    assert rc == 1 and "completed" in err


TRAINER = textwrap.dedent(
    """
    import sys, time
    from tuitrain.store import Store
    s = Store(sys.argv[1]); run_id = sys.argv[2]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for c in s.claim_commands(run_id):
            if c.kind == "stop":
                s.reject_command(c.id, "nope, testing")
            else:
                s.ack_command(c.id, step=17)
            if c.kind == "eval":
                sys.exit(0)
        time.sleep(0.05)
    """
)


def test_ctl_wait_against_real_process(runs, capsys):
    d, _, live = runs
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(d), live])
    try:
        rc, out, _ = cli(
            capsys,
            "ctl",
            "--runs-dir",
            str(d),
            live,
            "scale-lr",
            "0.5",
            "--wait",
            "--timeout",
            "20",
        )
        assert rc == 0 and "applied at step 17" in out
        rc, out, err = cli(
            capsys, "ctl", "--runs-dir", str(d), live, "stop", "--wait", "--timeout", "20"
        )
        assert rc == 1 and "rejected: nope, testing" in err
        rc, out, _ = cli(
            capsys, "ctl", "--runs-dir", str(d), live, "eval", "--wait", "--timeout", "20"
        )
        assert rc == 0
        proc.wait(timeout=20)
        t0 = time.monotonic()
        # Nobody claims now: --wait times out with exit 3.
        rc, _, err = cli(
            capsys, "ctl", "--runs-dir", str(d), live, "checkpoint", "--wait", "--timeout", "0.3"
        )
        assert rc == run_cmds.EXIT_TIMEOUT and "still pending" in err and time.monotonic() - t0 < 10
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_console_script_entry(runs):
    d, _, _ = runs
    r = subprocess.run(
        [sys.executable, "-m", "tuitrain", "ls", "--runs-dir", str(d), "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 2


def test_reading_commands_never_create_a_database(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    rc, out, err = cli(capsys, "ls", "--runs-dir", str(missing), "--format", "json")
    assert rc == run_cmds.EXIT_NOT_FOUND and out == "" and "no such folder" in err
    rc, _, err = cli(capsys, "show", "--runs-dir", str(missing), "x")
    assert rc == run_cmds.EXIT_NOT_FOUND and "no runs in" in err and "--runs-dir" in err
    rc, _, err = cli(capsys, "ctl", "--runs-dir", str(missing), "x", "stop")
    assert rc == run_cmds.EXIT_NOT_FOUND
    assert not missing.exists()


def test_show_names_a_sweep(runs, capsys):
    from tuitrain.sweep import records

    d, _, _ = runs
    rec = records.SweepRecord(
        id=records.new_sweep_id("lr-search"), name="lr-search", method="grid", metric="val_loss",
        direction="minimize", n_trials=1, parallel=1, study_name="x", storage="sqlite://",
        spec={"space": {"optimizer.lr": {}}}, pid=os.getpid(),
    )  # fmt: skip
    records.save(rec, d)
    rc, out, _ = cli(capsys, "show", "--runs-dir", str(d), "lr-search")
    assert rc == 0 and out.startswith(f"sweep {rec.id} (lr-search)")
