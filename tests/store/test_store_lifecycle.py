"""Tests of crash detection (dead pid, zombie, stale heartbeat: tuitrain.runs.liveness, persisted
only by its writers, never by a store read) and network-filesystem warnings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings

import pytest

from tuitrain.runs import liveness
from tuitrain.runs.process import pid_alive
from tuitrain.store import NetworkFilesystemWarning, RunWriter, Store
from tuitrain.store import store as store_mod
from tuitrain.store.db import mount_fstype, network_fs_warning


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs")
    yield s
    s.close()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=30)
    return p.pid


def test_dead_pid_is_marked_crashed_once_with_event(store):
    run = store.create_run({}, {})
    store.mark_started(run.id, _dead_pid())
    # A plain read (what a screen's poll does) shows it crashed but writes nothing.
    assert liveness.view_runs(store)[0].status == "crashed"
    assert store.get_run(run.id).status == "running" and store.events(run.id) == []
    listed = liveness.list_runs(store)[0]
    assert listed.status == "crashed" and "gone" in listed.exit_reason and listed.ended
    # Persisted: a raw read sees it too, and a second read adds no second event.
    assert store.conn.execute("SELECT status FROM runs").fetchone()[0] == "crashed"
    liveness.get_run(store, run.id)
    errors = [e for e in store.events(run.id) if e.kind == "error"]
    assert len(errors) == 1 and "crashed" in errors[0].message


def test_zombie_counts_as_dead(store):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 20
        # Not waited on: it stays a zombie, which os.kill(pid, 0) alone would call alive.
        while pid_alive(p.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        run = store.create_run({}, {})
        store.mark_started(run.id, p.pid)
        assert liveness.get_run(store, run.id).status == "crashed"
    finally:
        p.wait(timeout=10)


def test_stale_heartbeat_of_a_live_local_process_is_stalled_never_crashed(store, monkeypatch):
    """Our own process is the run's: however long its heartbeat is silent, it is alive here."""
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid())
    assert liveness.get_run(store, run.id).status == "running"
    old = time.time() - liveness.REMOTE_DEAD_S - 5
    store.conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (old, run.id))
    got = liveness.get_run(store, run.id)
    assert got.status == "running" and got.stalled and got.last_step_age_s is not None
    assert liveness.stall_label(got).startswith("stalled ")


def test_stale_heartbeat_on_another_host_is_crashed_and_live_writer_revives(store, monkeypatch):
    """On another host (no pid to look at) only a silence far past the stall is crashed."""
    monkeypatch.setenv("TUITRAIN_HEARTBEAT_STALL_S", "5")
    monkeypatch.setenv("TUITRAIN_REMOTE_DEAD_S", "50")
    run = store.create_run({}, {})
    store.mark_started(run.id, os.getpid(), host="some-other-host")
    store.conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - 20, run.id))
    got = liveness.get_run(store, run.id)
    assert got.status == "running" and got.stalled  # silent 20 s: stalled, not dead yet
    store.conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - 55, run.id))
    got = liveness.get_run(store, run.id)
    assert got.status == "crashed" and "heartbeat" in got.exit_reason
    assert "TUITRAIN_REMOTE_DEAD_S" in got.exit_reason
    # The run's writer (its pid) beats again: the run comes back.
    with RunWriter(store.runs_dir, run.id) as w:
        w.log(1, {"loss": 1.0})
    assert liveness.get_run(store, run.id).status == "running"
    assert any("heartbeat resumed" in e.message for e in store.events(run.id))


def test_remote_host_uses_heartbeat_only(store):
    run = store.create_run({}, {})
    store.mark_started(run.id, 999_999_999, host="some-other-host")
    assert liveness.get_run(store, run.id).status == "running"


def test_terminal_runs_are_left_alone(store):
    run = store.create_run({}, {})
    store.mark_started(run.id, _dead_pid())
    store.set_status(run.id, "completed")
    assert liveness.get_run(store, run.id).status == "completed"
    assert store.events(run.id) == []


@pytest.mark.parametrize(
    "fstype",
    ["nfs", "nfs4", "lustre", "cifs", "smb3", "fuse.sshfs", "ceph", "gpfs", "beegfs", "9p"],
)
def test_network_fstypes_warn(fstype):
    msg = network_fs_warning(fstype, "/mnt/x")
    assert msg and fstype in msg and "/mnt/x" in msg and "local disk" in msg


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", None])
def test_local_fstypes_do_not_warn(fstype):
    assert network_fs_warning(fstype, "/x") is None


def test_mount_fstype_picks_longest_mount_point(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "rootfs / ext4 rw 0 0\n"
        "srv:/export /mnt/shared nfs4 rw 0 0\n"
        "srv:/other /mnt/shared/deeper\\040x lustre rw 0 0\n"
    )
    assert mount_fstype("/mnt/shared/runs", str(mounts)) == "nfs4"
    assert mount_fstype("/mnt/shared/deeper x/runs", str(mounts)) == "lustre"
    assert mount_fstype("/mnt/sharedX", str(mounts)) == "ext4"
    assert mount_fstype("/x", str(tmp_path / "missing")) is None


def test_store_warns_once_on_network_fs(tmp_path, monkeypatch):
    # The fstype lookup is the only thing replaced: this machine has no NFS mount to test on.
    monkeypatch.setattr(store_mod, "mount_fstype", lambda path: "nfs4")
    with pytest.warns(NetworkFilesystemWarning, match="network filesystem"):
        s = Store(tmp_path)
    assert "nfs4" in s.fs_warning
    s.close()
    monkeypatch.setattr(store_mod, "mount_fstype", lambda path: "ext4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Store(tmp_path).close()
