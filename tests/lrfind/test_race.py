"""The race's pure parts: where it extends, and its record round trip (files in a real directory)."""

from __future__ import annotations

import math

import pytest

from tuitrain.lrfind.race import (
    Lane,
    judge,
    list_records,
    next_factor,
    read_record,
    verdict_of_record,
    write_record,
)


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
