"""The race's pure parts: where it extends, who wins, and its record round trip (a real store)."""

from __future__ import annotations

import math

import pytest

from tuitrain.lrfind.race import Lane, judge, next_factor, verdict_of_record
from tuitrain.lrfind.records import list_records, read_record, write_record


def lane(factor: float, val: float, noise: float = 0.001) -> Lane:
    return Lane(
        f"r{factor:g}", f"b-x{factor:g}", factor, factor * 1e-3, "completed", val, -0.01, noise
    )


def test_extends_past_the_winning_edge_by_the_same_ratio():
    fs = [0.3, 1.0, 3.0]
    assert next_factor(fs, judge([lane(0.3, 2.0), lane(1, 1.5), lane(3, 1.2)])) == pytest.approx(9)
    assert next_factor(fs, judge([lane(0.3, 1.0), lane(1, 1.5), lane(3, 1.9)])) == pytest.approx(
        0.09
    )
    # An interior best, or too few val losses: the race is done.
    assert next_factor(fs, judge([lane(0.3, 2.0), lane(1, 1.0), lane(3, 1.9)])) is None
    assert next_factor(fs, judge([lane(0.3, math.nan), lane(1, math.nan), lane(3, 1.0)])) is None


def test_record_round_trip_prefix_and_listing(tmp_path):
    verdict = judge([lane(1, 1.5), lane(3, 1.2)])
    rec = {"race_id": "20260101-120000-001", "status": "done", "factors": [1.0, 3.0]}
    rec["verdict"], rec["winning_lr"] = verdict.as_json(), 3e-3
    write_record(tmp_path, rec)
    write_record(tmp_path, {**rec, "race_id": "20260102-120000-002", "verdict": None})
    assert read_record(tmp_path, "20260101")["winning_lr"] == 3e-3  # a unique prefix
    with pytest.raises(KeyError, match="matches several races"):
        read_record(tmp_path, "2026010")
    with pytest.raises(KeyError, match="is no race.*lr-race show"):
        read_record(tmp_path, "nope")
    assert [r["race_id"] for r in list_records(tmp_path)] == [
        "20260101-120000-001",
        "20260102-120000-002",
    ]
    back = verdict_of_record(read_record(tmp_path, "20260101-120000-001"))
    assert back.winner.factor == 3.0 and back.margin == pytest.approx(0.3)
    assert verdict_of_record(read_record(tmp_path, "20260102")) is None


def test_fewer_than_two_finished_branches_have_no_winner():
    """A crashed or failed branch does not count: one finished branch wins nothing, and the
    unfinished one's reason (where its log is) is in the notes."""
    crashed = Lane("rc", "b-x1", 1.0, 1e-3, "crashed", math.nan, math.nan, math.nan,
                   "process 42 on h is gone without a final status")  # fmt: skip
    failed = Lane("rf", "b-x3", 3.0, 3e-3, "failed", math.nan, math.nan, math.nan,
                  "its lane driver (pid 42) exited before training it; last lines of "
                  "/runs/races/lanes/x.log:\nKilled")  # fmt: skip
    v = judge([lane(0.3, 1.2), crashed, failed])
    assert v.winner is None and v.margin is None
    assert any("only one branch finished" in n for n in v.notes)
    assert any("b-x3 (x3) has no val loss (failed: its lane driver" in n for n in v.notes)
    assert any("/runs/races/lanes/x.log" in n for n in v.notes)
    # A branch stopped with a val loss (e.g. the race was stopped) is not finished either.
    stopped = Lane("rs", "b-x1", 1.0, 1e-3, "stopped", 1.0, -0.01, 0.001)
    assert judge([lane(0.3, 1.2), stopped]).winner is None
    assert judge([lane(0.3, 1.2), lane(1, 1.0)]).winner.factor == 1


def test_json_race_records_move_into_the_database_on_open(tmp_path):
    """Races kept as RUNS_DIR/races/*.json (before schema 5) are imported once and renamed."""
    import json

    from tuitrain.store import SCHEMA_VERSION, Store

    folder = tmp_path / "races"
    folder.mkdir()
    old = {"race_id": "20250101-120000-001", "status": "done", "factors": [1.0, 3.0],
           "created": 1.0, "ended": 2.0, "winning_lr": 3e-3, "verdict": None}  # fmt: skip
    (folder / f"{old['race_id']}.json").write_text(json.dumps(old))
    (folder / "notes.json").write_text("[1, 2]")  # not a race record: left alone
    (folder / "lanes").mkdir()  # the lane drivers' folder is not a record either
    # No database yet, only the old files: listing opens one (and moves them in).
    assert [r["race_id"] for r in list_records(tmp_path)] == [old["race_id"]]
    with Store(tmp_path) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert read_record(tmp_path, "20250101")["winning_lr"] == 3e-3
    assert (folder / f"{old['race_id']}.json.migrated").is_file()
    assert not (folder / f"{old['race_id']}.json").exists()
    assert (folder / "notes.json").is_file()
    assert [r["race_id"] for r in list_records(tmp_path)] == [old["race_id"]]
    with Store(tmp_path):  # a second open imports nothing twice
        pass
    assert len(list_records(tmp_path)) == 1
