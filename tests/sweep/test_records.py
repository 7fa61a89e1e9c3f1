"""Sweep records on disk and the Optuna study wiring (real Optuna, in-memory or sqlite)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tuitrain.store import Store, db
from tuitrain.sweep import records
from tuitrain.sweep.records import SweepNotFound, SweepRecord, TrialRecord
from tuitrain.sweep.spec import parse_spec
from tuitrain.sweep.study import create_study, default_storage, distributions, importance


def rec(name="s", **kw) -> SweepRecord:
    base = dict(
        id=records.new_sweep_id(name),
        name=name,
        method="tpe",
        metric="val_loss",
        direction="minimize",
        n_trials=3,
        parallel=1,
        study_name="x",
        storage="sqlite://",
        spec={"space": {"optimizer.lr": {}}},
        pid=os.getpid(),
    )
    base.update(kw)
    return SweepRecord(**base)


def test_save_load_rank_and_lookup(tmp_path):
    r = rec("alpha")
    r.trials = [
        TrialRecord(0, {"optimizer.lr": 1e-3}, run_id="a", state="complete", value=2.0),
        TrialRecord(1, {"optimizer.lr": 1e-2}, run_id="b", state="complete", value=1.5),
        TrialRecord(2, {"optimizer.lr": 1e-5}, run_id="c", state="pruned", value=5.0),
        TrialRecord(3, {"optimizer.lr": 9.0}, state="failed", error="bad"),
    ]
    records.save(r, tmp_path)
    back = records.get_sweep(tmp_path, "alpha")
    assert back.id == r.id and back.status == "running"  # our own pid is alive
    assert [t.number for t in back.ranked()] == [1, 0, 2, 3]
    assert back.best().number == 1
    assert back.counts() == {"complete": 2, "pruned": 1, "failed": 1}
    assert records.get_sweep(tmp_path, r.id[:12]).id == r.id
    assert records.is_sweep(tmp_path, r.id) and not records.is_sweep(tmp_path, "nope")
    with pytest.raises(SweepNotFound, match="tuitrain sweeps"):
        records.get_sweep(tmp_path, "nope")


def test_maximize_ranking_and_dead_sweep_reads_crashed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    r = rec("beta", direction="maximize", pid=int(dead.stdout))
    r.trials = [
        TrialRecord(0, {}, state="complete", value=0.6),
        TrialRecord(1, {}, state="complete", value=0.9),
    ]
    records.save(r, tmp_path)
    # A plain read (a screen's poll) shows it crashed and writes nothing.
    assert records.list_sweeps(tmp_path)[0].status == "crashed"
    with Store(tmp_path) as s:
        assert s.conn.execute("SELECT status FROM sweeps").fetchone()[0] == "running"
    listed = records.list_sweeps(tmp_path, reconcile=True)  # a writer (`tuitrain sweeps`)
    assert [s.id for s in listed] == [r.id]
    assert listed[0].status == "crashed" and listed[0].best().value == 0.9
    # Persisted: a raw read of the table agrees with what readers are shown.
    with Store(tmp_path) as s:
        row = s.conn.execute("SELECT status, ended FROM sweeps WHERE id = ?", (r.id,)).fetchone()
    assert row[0] == "crashed" and row[1]


def test_a_reused_pid_does_not_keep_a_sweep_alive(tmp_path):
    # Our own pid is alive, but with another start time it is another process.
    r = rec("gamma", pid=os.getpid(), pid_start=1)
    records.save(r, tmp_path)
    assert records.get_sweep(tmp_path, "gamma").status == "crashed"


def test_json_records_are_migrated_into_the_database_on_first_open(tmp_path):
    """Sweeps kept as <runs_dir>/sweeps/*.json (schema 1) move into the sweeps table once."""
    old = rec("legacy", pid=None, status="completed")
    old.trials = [TrialRecord(0, {"optimizer.lr": 1e-3}, run_id="r0", state="complete", value=1.25)]
    folder = tmp_path / "sweeps"
    folder.mkdir()
    data = old.as_dict()
    data.pop("pid_start")  # schema-1 files had no start time
    (folder / f"{old.id}.json").write_text(json.dumps(data))
    (folder / "junk.json").write_text("{not json")
    (folder / "detached-1.log").write_text("a log stays a log")
    # A schema-1 database, as an older tuitrain left it.
    conn = sqlite3.connect(tmp_path / "tuitrain.db")
    db._v1(conn)
    conn.execute("PRAGMA user_version=1")
    conn.close()
    got = records.get_sweep(tmp_path, "legacy")
    assert got.as_dict() == {**data, "pid_start": None}
    assert got.best().value == 1.25
    # Migrated files are renamed (nothing reads them now); a damaged one stays as it was.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{old.id}.json.migrated", "junk.json", "detached-1.log"]
    )
    with Store(tmp_path) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert [x.id for x in records.list_sweeps(tmp_path)] == [old.id]  # once, not twice


def test_grid_study_covers_every_point_once(tmp_path):
    spec = parse_spec(
        {
            "base": "x.yaml",
            "method": "grid",
            "space": {
                "optimizer.lr": [1e-3, 1e-2],
                "batch.size": {"type": "int", "low": 4, "high": 8, "step": 4},
            },
        }
    )
    study = create_study(spec, default_storage(tmp_path), "g")
    dists = distributions(spec)
    seen = set()
    for _ in range(spec.grid_size()):
        t = study.ask(dists)
        seen.add((t.params["optimizer.lr"], t.params["batch.size"]))
        study.tell(t, t.params["optimizer.lr"] * t.params["batch.size"])
    assert seen == {(1e-3, 4), (1e-3, 8), (1e-2, 4), (1e-2, 8)}
    assert (tmp_path / "sweeps.optuna.db").is_file()
    imp = importance(study)
    assert set(imp) == {"optimizer.lr", "batch.size"}


def test_median_pruner_and_enqueue(tmp_path):
    spec = parse_spec(
        {
            "base": "x.yaml",
            "method": "tpe",
            "space": {"optimizer.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1}},
            "pruning": {"n_startup_trials": 2},
            "enqueue": [{"optimizer.lr": 0.01}],
        }
    )
    study = create_study(spec, default_storage(tmp_path), "p")
    dists = distributions(spec)
    first = study.ask(dists)
    assert first.params["optimizer.lr"] == 0.01
    for t in (first, study.ask(dists)):
        for step, v in ((2, 3.0), (4, 2.0)):
            t.report(v, step)
            assert not t.should_prune()
        study.tell(t, 2.0)
    bad = study.ask(dists)
    bad.report(5.0, 2)
    assert bad.should_prune()


def test_storage_from_env_and_redacted(tmp_path, monkeypatch):
    from tuitrain.sweep.study import redact, storage_url

    assert storage_url(None, tmp_path).endswith("/sweeps.optuna.db")
    monkeypatch.setenv("MY_STUDY_DB", "postgresql://bob:p@ss@db:5432/optuna")
    assert storage_url("env:MY_STUDY_DB", tmp_path) == "postgresql://bob:p@ss@db:5432/optuna"
    assert redact("postgresql://bob:p@ss@db:5432/optuna") == "postgresql://bob:***@db:5432/optuna"
    with pytest.raises(ValueError, match="NOPE_VAR is not set"):
        storage_url("env:NOPE_VAR", tmp_path)


def test_same_name_and_storage_share_one_study(tmp_path):
    # Two machines (here: two study objects) pointing at one storage and study name work on one
    # study; the second does not re-enqueue points the first already queued.
    spec = parse_spec(
        {
            "base": "x.yaml",
            "method": "random",
            "study_name": "shared",
            "space": {"optimizer.lr": [1e-3, 1e-2]},
            "enqueue": [{"optimizer.lr": 1e-3}],
        }
    )
    url = default_storage(tmp_path)
    a = create_study(spec, url, "shared")
    b = create_study(spec, url, "shared")
    t = a.ask(distributions(spec))
    a.tell(t, 1.0)
    assert [x.value for x in b.get_trials()] == [1.0]
    assert len(b.get_trials()) == 1  # b found a's enqueued point and added none


def test_sweep_ref_never_becomes_a_path_outside_the_sweeps_folder(tmp_path):
    from tuitrain.sweep.records import SweepNotFound, get_sweep, sweeps_dir

    sweeps_dir(tmp_path).mkdir(parents=True, exist_ok=True)
    (tmp_path / "outside.json").write_text("{}")
    with pytest.raises(SweepNotFound):
        get_sweep(tmp_path, "../outside")
