"""Provides DoctorLines: which `doctor` events a follower (`tuitrain run`) prints: a diagnosis
that opens as (or rises to) warning or critical, once; automatic actions; nothing else."""

from __future__ import annotations

from typing import Any

from tuitrain.doctor.diagnosis import RANK


class DoctorLines:
    """Turns a run's `doctor` events into lines, without repeats for an id while it stays open."""

    def __init__(self) -> None:
        self.shown: dict[str, int] = {}  # id -> highest severity rank printed since it opened

    def line(self, ev: Any) -> str | None:
        """The line to print for this event, or None."""
        data = ev.data or {}
        state, did = data.get("state"), data.get("id")
        if state == "auto":
            return f"doctor: {ev.message}"
        if state == "closed":
            self.shown.pop(did, None)
            return None
        rank = RANK.get(data.get("severity", "info"), 0)
        if state not in ("open", "update") or rank < RANK["warning"]:
            return None
        if self.shown.get(did, -1) >= rank:
            return None
        self.shown[did] = rank
        action = data.get("action") or {}
        act = f" -> {action['label']}" if action.get("label") else ""
        start = f" from step {data['step']}" if data.get("step") is not None else ""
        return (
            f"doctor: {data['severity'].upper()} {did}{start}: {data.get('evidence', '')}"
            f" (remedy: {data.get('remedy', '')}{act}; details: tuitrain doctor {ev.run_id})"
        )
