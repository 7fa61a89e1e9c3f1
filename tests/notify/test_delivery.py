"""Delivery through real Apprise to a local json:// target: the notifier process per runs dir
(single instance, exits when idle), a target answering 500 or never answering (retries, one
failed entry, the good target still served at once), notify.command, `tuitrain notify test/log`,
and no secret in the log or the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.notify.server import Hook
from tuitrain.notify.daemon import Lock, running_pid, serve
from tuitrain.notify.deliver import Dispatcher
from tuitrain.notify.log import NotifyLog, read
from tuitrain.notify.message import sample
from tuitrain.notify.settings import Settings, Target
from tuitrain.store import Store

FAST = Settings(retries=1, backoff_s=0.1, timeout_s=1.0)


def wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_bad_targets_fail_alone_and_are_logged_once(tmp_path):
    with Hook("ok") as good, Hook("500") as bad, Hook("hang") as slow:
        s = replace(
            FAST, targets=(Target(slow.url), Target(bad.url), Target(good.url)), timeout_s=2.0
        )
        log = NotifyLog(tmp_path)
        d = Dispatcher(s, log)
        d.put(sample("host"))
        good.wait_for(lambda m: True, 10, "the good target's message")
        # The good target is not held up by the hanging one, whose request is still in flight.
        assert not d.senders[0][1].idle() and slow.hits >= 1
        d.close(timeout=20)
        assert bad.hits == 2 and slow.hits == 2  # first try + one retry each
    entries = read(tmp_path)
    final = {e["target"]: e["status"] for e in entries if e["status"] in ("sent", "failed")}
    assert sorted(final.values()) == ["failed", "failed", "sent"]
    failed = [e for e in entries if e["status"] == "failed"]
    assert all(e["attempts"] == 2 and e["error"] for e in failed)
    assert any("500" in e["error"] for e in failed)


def test_queue_is_bounded_and_drops_the_oldest(tmp_path):
    with Hook("hang") as slow:
        s = replace(FAST, targets=(Target(slow.url),), queue_size=2, retries=0, timeout_s=0.5)
        log = NotifyLog(tmp_path)
        d = Dispatcher(s, log)
        notes = [sample("h") for _ in range(5)]
        for i, n in enumerate(notes):
            n.key = f"k{i}"
            d.put(n)
        d.close(timeout=10)
    dropped = [e["key"] for e in read(tmp_path) if e["status"] == "dropped"]
    assert len(dropped) >= 2 and "k4" not in dropped  # the newest is kept


def test_notify_command_gets_json_on_stdin(tmp_path):
    out = tmp_path / "got.json"
    s = replace(FAST, command=f"cat > {out}", retries=0)
    d = Dispatcher(s, NotifyLog(tmp_path))
    n = sample("h")
    d.put(n)
    d.close(timeout=10)
    got = json.loads(out.read_text())
    assert got["title"] == n.title and got["event"] == "test"
    bad = replace(FAST, command="sleep 5", command_timeout_s=0.3, retries=0)
    d = Dispatcher(bad, NotifyLog(tmp_path))
    d.put(sample("h"))
    d.close(timeout=10)
    assert any("did not finish within 0.3 s" in e.get("error", "") for e in read(tmp_path))


def test_notifier_sends_run_end_is_single_and_exits_when_idle(tmp_path):
    runs = tmp_path / "runs"
    with Store(runs) as store, Hook() as hook:
        run = store.create_run({"run": {}}, {}, name="r")
        store.mark_started(run.id, os.getpid())
        s = replace(FAST, targets=(Target(hook.url),))
        stop = threading.Event()
        t = threading.Thread(target=serve, args=(runs, s, 0.1, 0.5, stop), daemon=True)
        t.start()
        wait(lambda: running_pid(runs) == os.getpid(), 60, "the lock")  # apprise loads first
        assert not Lock(runs).acquire()  # a second notifier would give up at once
        assert serve(runs, s, 0.1, 0.5) == 0
        store.set_status(run.id, "completed")
        (m,) = hook.wait_for(lambda m: "completed" in m["title"], 60, "the end")
        assert "tuitrain show r" in m["message"]
        t.join(10)  # nothing live for 0.5 s: it exits by itself
        assert not t.is_alive() and running_pid(runs) is None
    statuses = [e["status"] for e in read(runs)]
    assert statuses[0] == "started" and statuses[-1] == "stopped" and statuses.count("sent") == 1


def tuitrain(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env}, cwd=cwd,
    )  # fmt: skip


def test_cli_notify_test_and_log(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    conf = tmp_path / "notify.yaml"
    conf.write_text("timeout_s: 2\n")
    with Hook() as good, Hook("500") as bad:
        secret_good = good.url + "/s3cr3t-t0ken"
        env = {"TUITRAIN_NOTIFY": f"{secret_good}, {bad.url}/an0ther-t0ken",
               "TUITRAIN_NOTIFY_CONFIG": str(conf)}  # fmt: skip
        out = tuitrain("notify", "test", "--runs-dir", str(runs), env=env, cwd=tmp_path)
        assert out.returncode == 1, out.stderr
        assert f"ok      json://127.0.0.1:{good.port}/***" in out.stdout
        assert f"FAILED  json://127.0.0.1:{bad.port}/***: " in out.stdout and "500" in out.stdout
        assert good.received[0]["title"] == "tuitrain test notification"
        log = tuitrain("notify", "log", "--runs-dir", str(runs), env=env, cwd=tmp_path)
        assert log.returncode == 0 and "sent" in log.stdout and "error:" in log.stdout
        for text in (out.stdout, out.stderr, log.stdout, (runs / "notify.log").read_text()):
            assert "t0ken" not in text
    none = tuitrain("notify", "test", env={"TUITRAIN_NOTIFY_CONFIG": str(conf)}, cwd=tmp_path)
    assert none.returncode == 1 and "TUITRAIN_NOTIFY=ntfy://ntfy.sh/YOUR-TOPIC" in none.stderr
    conf.write_text("events: [exploded]\n")
    badconf = tuitrain("notify", "test", env={"TUITRAIN_NOTIFY_CONFIG": str(conf)}, cwd=tmp_path)
    assert badconf.returncode == 2 and "unknown event 'exploded'" in badconf.stderr
    assert "Traceback" not in badconf.stderr


@pytest.mark.parametrize(
    "argv", [["notify", "log", "--limit", "5"], ["notify", "log", "--format", "json"]]
)
def test_cli_log_without_a_log(tmp_path, argv):
    out = tuitrain(*argv, "--runs-dir", str(tmp_path / "runs"), env={}, cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr
