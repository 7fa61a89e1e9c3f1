"""Provides history(events, ...): a run's doctor episodes, open and closed, read back from its
`doctor` events, so a finished run can still say what went wrong, when, how badly, and how it ended.

An episode is one diagnosis id from the event that opened it to the event that closed it (or to now):
its highest severity, its first and last step, its peak (the worst evidence seen, e.g. loss 139 at
step 91), the consequences attached to it, and why it closed (`recovered`, `run ended`,
`superseded`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tuitrain.doctor.diagnosis import RANK

EVENT_KIND = "doctor"
CLOSED_REASONS = ("recovered", "run ended", "superseded")
# The value that measures how bad a diagnosis is, in the order looked for (first numeric wins).
MAGNITUDE_KEYS = ("loss", "grad_norm", "ratio", "now", "share", "level", "noise", "age_s")


@dataclass
class Episode:
    """One diagnosis from opening to closing: what the post-mortem lists."""

    id: str
    severity: str  # the highest reached
    state: str  # open | closed
    first_step: int | None
    last_step: int | None
    peak: dict[str, Any]  # {severity, step, evidence, values} of the worst transition
    evidence: str  # the latest evidence
    remedy: str
    action: dict[str, Any] | None
    closed_reason: str | None = None
    consequences: list[str] = field(default_factory=list)
    opened: int = 1  # how many times it (re)opened within this episode


def magnitude(values: dict[str, Any] | None) -> float:
    """How bad the evidence is, as one number (NaN/inf evidence is the worst)."""
    for key in MAGNITUDE_KEYS:
        x = (values or {}).get(key)
        if isinstance(x, str):
            try:
                x = float(x)
            except ValueError:
                continue
        if isinstance(x, int | float):
            return math.inf if not math.isfinite(x) else float(x)
    return 0.0


def _peak(data: dict[str, Any], step: int | None) -> dict[str, Any]:
    if isinstance(data.get("peak"), dict):  # the worst seen before the episode opened
        peak = data["peak"]
        values = peak.get("values") or {}
        return {**peak, "values": values, "step": values.get("peak_step", step)}
    return {
        "severity": data.get("severity", "info"),
        "step": (data.get("values") or {}).get("peak_step", step),
        "evidence": data.get("evidence", ""),
        "values": data.get("values") or {},
    }


def _worse(new: dict[str, Any], old: dict[str, Any]) -> bool:
    a = (RANK.get(new["severity"], 0), magnitude(new["values"]))
    b = (RANK.get(old["severity"], 0), magnitude(old["values"]))
    return a > b


def _attach(current: dict[str, Episode], waiting: dict[str, list[str]]) -> None:
    """Attach the waiting consequences whose cause has an open episode."""
    for cause in [c for c in waiting if c in current]:
        ep = current[cause]
        ep.consequences += [c for c in waiting.pop(cause) if c not in ep.consequences]


def history(events: list[Any], ended: bool = False, last_step: int | None = None) -> list[Episode]:
    """Every episode of a run, oldest first, from its events (any order-preserving list).

    `ended`: the run is over, so an episode still open is reported closed with `run ended`.
    """
    episodes: list[Episode] = []
    current: dict[str, Episode] = {}
    waiting: dict[str, list[str]] = {}  # cause id -> consequences not yet attached
    for ev in events:
        data = ev.data or {}
        if ev.kind != EVENT_KIND or "id" not in data:
            continue
        state, did, step = data.get("state"), data["id"], ev.step
        if state == "consequence":  # may come just before its cause's opening, in one check
            waiting.setdefault(data.get("cause", ""), []).append(did)
            _attach(current, waiting)
            continue
        if state not in ("open", "update", "closed"):
            continue
        ep = current.get(did)
        if state == "open" and ep is None:
            ep = Episode(
                did,
                data.get("severity", "info"),
                "open",
                data.get("step", step),
                step,
                _peak(data, step),
                data.get("evidence", ""),
                data.get("remedy", ""),
                data.get("action"),
            )
            current[did] = ep
            episodes.append(ep)
            _attach(current, waiting)
            continue
        if ep is None:  # an update or close without its opening (events trimmed): skip
            continue
        ep.last_step = step if step is not None else ep.last_step
        if state == "closed":
            ep.state = "closed"
            reason = data.get("reason")
            ep.closed_reason = reason if reason in CLOSED_REASONS else "recovered"
            current.pop(did, None)
            continue
        if state == "open":
            ep.opened += 1
        if RANK.get(data.get("severity", "info"), 0) > RANK.get(ep.severity, 0):
            ep.severity = data["severity"]
        ep.evidence = data.get("evidence", ep.evidence)
        ep.action = data.get("action", ep.action)
        peak = _peak(data, step)
        if _worse(peak, ep.peak):
            ep.peak = peak
    for ep in current.values():
        if last_step is not None:
            ep.last_step = max(ep.last_step or 0, last_step)
        if ended:
            ep.state, ep.closed_reason = "closed", "run ended"
    return episodes


def combined(open_now: list[Any], episodes: list[Episode], last_step: int | None) -> list[dict]:
    """The post-mortem list: the diagnoses open now (with their episode's first step and peak),
    then every closed episode, newest first. Each is a Diagnosis dict plus `state`,
    `first_step`, `last_step`, `peak`, `closed_reason` and `consequences`."""
    latest: dict[str, Episode] = {}
    for ep in episodes:
        latest[ep.id] = ep  # the newest episode of each id
    out = []
    shown = set()
    for d in open_now:
        ep = latest.get(d.id)
        if ep is not None and ep.closed_reason not in (None, "run ended"):
            ep = None  # that episode closed for good; this is a new one the events do not hold
        peak = ep.peak if ep is not None else _peak(d.to_dict(), d.step)
        if ep is not None and _worse(_peak(d.to_dict(), d.step), peak):
            peak = _peak(d.to_dict(), d.step)
        out.append(
            {
                **d.to_dict(),
                "state": "open",
                "first_step": ep.first_step if ep is not None else d.step,
                "last_step": last_step,
                "peak": peak,
                "closed_reason": None,
                "consequences": list(ep.consequences) if ep is not None else [],
            }
        )
        if ep is not None:
            shown.add(id(ep))
    for ep in reversed(episodes):
        if id(ep) in shown:
            continue
        out.append(
            {
                "id": ep.id,
                "severity": ep.severity,
                "step": ep.first_step,
                "evidence": ep.evidence,
                "remedy": ep.remedy,
                "action": ep.action,
                "values": ep.peak.get("values", {}),
                "state": "closed" if ep.state == "closed" else "open",
                "first_step": ep.first_step,
                "last_step": ep.last_step,
                "peak": ep.peak,
                "closed_reason": ep.closed_reason,
                "consequences": list(ep.consequences),
            }
        )
    return out
