"""Provides Notification and its builders: a short title, a body with the run, host, step, the
status or diagnosis with its evidence numbers, and the one command to act, within chat limits."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tuitrain.runs.checkpoints import best_dir

TITLE_MAX = 100  # ntfy/Slack/Discord show ~100 characters in a title or a preview line
BODY_MAX = 1000  # well inside Discord (2000), Telegram (4096), ntfy (4096), Matrix
SEVERITY_OF = {
    "completed": "info",
    "early_stopped": "info",
    "stopped": "info",
    "new_best": "info",
    "sweep_finished": "info",
    "race_finished": "info",
    "doctor_action": "warning",
    "stalled": "warning",
    "failed": "critical",
    "diverged": "critical",
    "crashed": "critical",
}


@dataclass
class Notification:
    """One message to every target that wants its event."""

    event: str  # a key of tuitrain.notify.settings.EVENTS (or "test")
    key: str  # unique per episode: the same key is never sent twice
    title: str
    body: str
    severity: str = "info"  # info | warning | critical (Apprise's notify type)
    run_id: str | None = None
    run_name: str | None = None
    command: str | None = None  # the one line to act
    data: dict[str, Any] = field(default_factory=dict)  # evidence numbers
    time: float = field(default_factory=time.time)  # when the event happened

    def __post_init__(self) -> None:
        self.title = _cut(self.title, TITLE_MAX)
        self.body = _cut(self.body, BODY_MAX)

    def as_json(self) -> str:
        """What notify.command gets on stdin."""
        return json.dumps(asdict(self), default=str)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def _secs(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def _where(run: Any) -> str:
    total = (run.summary or {}).get("total_steps") or (run.derived or {}).get("total_steps")
    step = run.last_step if run.last_step is not None else 0
    at = f"step {step}/{total}" if total else f"step {step}"
    return f"run {run.name} ({run.id}) on {run.host or '?'}, {at}"


def _make(event: str, key: str, run: Any, title: str, lines: list[str], command: str | None,
          data: dict[str, Any] | None = None, severity: str | None = None,
          when: float | None = None) -> Notification:  # fmt: skip
    body = "\n".join([_where(run), *[ln for ln in lines if ln]])
    if command:
        body += f"\n→ {command}"
    return Notification(
        event, key, title, body, severity or SEVERITY_OF.get(event, "info"), run.id, run.name,
        command, data or {}, when or time.time(),
    )  # fmt: skip


def run_ended(run: Any) -> Notification:
    """A run reached a final status: completed, failed, diverged, crashed, early-stopped, stopped."""
    s = run.summary or {}
    lines, data = [], {"status": run.status}
    best = _best(s, run)
    if best:
        lines.append(best)
        data.update(
            {k: s[k] for k in ("best_metric", "best_value", "best_step", "best_val_loss") if k in s}
        )
    if run.exit_reason and run.status != "completed":
        lines.append(f"reason: {run.exit_reason}")
    if s.get("wall_time_s"):
        lines.append(f"wall time {s['wall_time_s'] / 60:.1f} min")
    if run.status == "completed":
        cmd = f"tuitrain show {run.name}"
    elif run.status in ("crashed", "stopped") or (run.status == "failed" and run.last_step):
        cmd = f"tuitrain resume {run.name}"
    elif run.status == "diverged":
        cmd = f"tuitrain doctor {run.name} --rollback"
    else:
        cmd = f"tuitrain show {run.name}"
    verb = run.status.replace("_", "-")
    return _make(run.status, f"{run.id}:end:{run.status}:{run.ended}", run,
                 f"{run.name} {verb}", lines, cmd, data, when=run.ended)  # fmt: skip


def _best(s: dict[str, Any], run: Any) -> str:
    if s.get("best_step") is not None and s.get("best_value") is not None:
        kept = best_dir(run.run_dir, s["best_step"])  # when the trainer saved the best weights
        where = f" (kept in checkpoints/{kept.name})" if kept.is_dir() else ""
        return f"best {s.get('best_metric', 'val')} {_num(s['best_value'])} at step {s['best_step']}{where}"
    if s.get("best_val_loss") is not None:
        return f"best val_loss {_num(s['best_val_loss'])}"
    return ""


def stalled(run: Any, age_s: float, limit_s: float | None, episode: int) -> Notification:
    """A live run whose step stopped advancing."""
    lines = [
        f"no step for {_secs(age_s)} s (threshold {_secs(limit_s or 0.0)} s)"
        + (f", phase {run.phase}" if run.phase else ""),
        f"to stop it: tuitrain stop {run.name}",
    ]
    data = {"age_s": round(age_s, 1), "threshold_s": limit_s, "last_step": run.last_step}
    return _make("stalled", f"{run.id}:stalled:{episode}", run, f"{run.name} stalled", lines,
                 f"tuitrain watch {run.name}", data)  # fmt: skip


def doctor_opened(run: Any, ev: Any, rollback: bool) -> Notification:
    """A doctor episode that opened (or rose) to at least the minimum severity."""
    d = ev.data or {}
    act = d.get("action") or {}
    lines = [f"{d.get('severity')}: {d.get('evidence', '')}"]
    if d.get("remedy"):
        lines.append(f"remedy: {d['remedy']}")
    if act.get("label") and not rollback:
        lines.append(f"action: {act['label']}")
    cmd = f"tuitrain doctor {run.name} --rollback" if rollback else f"tuitrain doctor {run.name}"
    data = {"diagnosis": d.get("id"), "severity": d.get("severity"), "step": d.get("step"),
            "values": d.get("values") or {}}  # fmt: skip
    return _make("doctor", f"{run.id}:doctor:{ev.id}", run,
                 f"{run.name}: {d.get('id')} ({d.get('severity')})", lines, cmd, data,
                 severity="critical" if d.get("severity") == "critical" else "warning",
                 when=ev.time)  # fmt: skip


def doctor_action(run: Any, ev: Any) -> Notification:
    """The doctor sent an automatic command."""
    d = ev.data or {}
    lines = [ev.message]
    return _make("doctor_action", f"{run.id}:auto:{ev.id}", run,
                 f"{run.name}: doctor applied {d.get('action', 'an action')}", lines,
                 f"tuitrain watch {run.name}", dict(d), when=ev.time)  # fmt: skip


def new_best(run: Any, ev: Any, value: float, previous: float | None) -> Notification:
    """A new best validation loss."""
    was = f" (was {_num(previous)})" if previous is not None else ""
    return _make("new_best", f"{run.id}:best:{ev.id}", run,
                 f"{run.name}: new best val_loss {_num(value)}",
                 [f"val_loss {_num(value)} at step {ev.step}{was}"], f"tuitrain watch {run.name}",
                 {"val_loss": value, "step": ev.step, "previous": previous}, when=ev.time)  # fmt: skip


def sweep_finished(rec: Any) -> Notification:
    """A sweep ended: its best trial and the promote line."""
    best = rec.best()
    counts = ", ".join(f"{n} {k}" for k, n in sorted(rec.counts().items())) or "no trials"
    lines = [f"sweep {rec.name} ({rec.id}) {rec.status}: {counts}"]
    cmd = None
    data: dict[str, Any] = {"status": rec.status, "counts": rec.counts()}
    if best is not None:
        params = ", ".join(f"{k}={_num(v)}" for k, v in best.params.items())
        lines.append(f"best: trial {best.number} ({best.run_name}) {rec.metric}={_num(best.value)}")
        lines.append(f"params: {params}")
        cmd = f"tuitrain sweep promote {rec.id}"
        data.update(best_trial=best.number, best_value=best.value, params=best.params)
    if rec.error:
        lines.append(f"error: {rec.error}")
    body = "\n".join(lines) + (f"\n→ {cmd}" if cmd else "")
    sev = "info" if rec.status == "completed" else "warning"
    return Notification("sweep_finished", f"sweep:{rec.id}:{rec.status}", f"sweep {rec.name} {rec.status}",
                        body, sev, None, rec.name, cmd, data, rec.ended or time.time())  # fmt: skip


def race_finished(rec: dict[str, Any]) -> Notification:
    """An LR race ended: the winner, its LR and the margin over the runner-up (vs the noise)."""
    rid = rec["race_id"]
    v = rec.get("verdict") or {}
    win = v.get("winner") or {}
    lines = [f"LR race {rid} from {rec.get('source')} {rec.get('status')}"]
    if win:
        lines.append(
            f"winner: x{_num(win.get('factor'))} (lr {_num(rec.get('winning_lr'))}), "
            f"val_loss {_num(win.get('val_loss'))}"
        )
        if v.get("margin") is not None:
            close = " (too close to call)" if v.get("too_close") else ""
            lines.append(f"margin {_num(v['margin'])} vs noise {_num(v.get('noise'))}{close}")
    lines += [n for n in v.get("notes") or []][:3]
    cmd = f"tuitrain lr-race show {rid}"
    body = "\n".join(lines) + f"\n→ {cmd}"
    data = {"winner_factor": win.get("factor"), "winning_lr": rec.get("winning_lr"),
            "margin": v.get("margin"), "noise": v.get("noise")}  # fmt: skip
    return Notification("race_finished", f"race:{rid}:{rec.get('status')}", f"LR race {rid} finished",
                        body, "info", None, None, cmd, data, rec.get("ended") or time.time())  # fmt: skip


def sample(host: str) -> Notification:
    """What `tuitrain notify test` sends."""
    return Notification("test", f"test:{time.time()}", "tuitrain test notification",
                        f"tuitrain on {host} can reach this target.\n→ tuitrain notify log", "info")  # fmt: skip
