"""Provides the user's notification settings: targets (Apprise URLs, secrets) from TUITRAIN_NOTIFY
or ~/.config/tuitrain/notify.yaml, which events go where, limits, and redaction of every URL.

Target URLs carry tokens, so they are read only from the environment or the user's own file:
never from a run's config, never written to the runs directory or the database, and printed only
through `redact()`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_URLS = "TUITRAIN_NOTIFY"  # one or more Apprise URLs, separated by spaces or commas
ENV_FILE = "TUITRAIN_NOTIFY_CONFIG"  # another path for notify.yaml (tests, several profiles)
ENV_COMMAND = "TUITRAIN_NOTIFY_COMMAND"  # notify.command from the environment
DEFAULT_FILE = "~/.config/tuitrain/notify.yaml"

# Every event that can notify, with its default (on / off) and what it means.
EVENTS: dict[str, tuple[bool, str]] = {
    "completed": (True, "a run completed (best validation value and where)"),
    "failed": (True, "a run failed (error, or exited before training started)"),
    "diverged": (True, "a run stopped because its loss became NaN/inf"),
    "crashed": (True, "a run's process is gone without a final status (kill -9, OOM kill)"),
    "early_stopped": (True, "early stopping ended a run"),
    "stopped": (False, "a run was stopped by hand (tuitrain stop, the TUI)"),
    "stalled": (True, "a live run's step has not advanced for longer than the stall threshold"),
    "doctor": (True, "a doctor episode opened at min_severity or above"),
    "doctor_action": (True, "the doctor sent an automatic command (doctor.auto)"),
    "sweep_finished": (True, "a sweep ended (best trial and the promote command)"),
    "race_finished": (True, "an LR race ended (winner and margin)"),
    "new_best": (False, "a run reached a new best validation value"),
}
SEVERITIES = ("info", "warning", "critical")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Separators between URLs: spaces or commas, but a comma only before the next scheme (an Apprise
# URL may hold commas itself, e.g. mailto://...?to=a@x,b@y).
_SPLIT = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


class NotifySettingsError(ValueError):
    """A notification setting that cannot be used; the message names the file/variable, the
    field and the fix (never the secret)."""


@dataclass(frozen=True)
class Target:
    """One Apprise URL and the events it gets (None: every enabled event)."""

    url: str
    events: frozenset[str] | None = None

    @property
    def name(self) -> str:
        """The URL as it may be printed (tokens hidden)."""
        return redact(self.url)

    def wants(self, event: str) -> bool:
        """Whether this target gets the event."""
        return self.events is None or event in self.events


@dataclass(frozen=True)
class Settings:
    """Where notifications go and which ones go out."""

    targets: tuple[Target, ...] = ()
    events: dict[str, bool] = field(default_factory=lambda: {k: v[0] for k, v in EVENTS.items()})
    min_severity: str = "warning"
    command: str | None = None  # notify.command: run with the notification JSON on stdin
    command_timeout_s: float = 10.0
    timeout_s: float = 10.0  # per delivery attempt (Apprise connect/read timeouts)
    retries: int = 3  # attempts after the first one
    backoff_s: float = 2.0  # wait before retry n: backoff_s * 2**(n-1)
    queue_size: int = 100  # per target; when full the oldest waiting notification is dropped
    rate_per_run: int = 6  # at most this many notifications per run per rate_window_s...
    rate_window_s: float = 600.0  # ...(a run's end always goes out)
    source: str = ""  # where the settings came from (for messages; never a secret)

    @property
    def configured(self) -> bool:
        """Whether anything would be sent at all."""
        return bool(self.targets or self.command)

    def enabled(self, event: str) -> bool:
        """Whether the event notifies (the user's choice over the defaults)."""
        return bool(self.events.get(event, False))


def split_urls(text: str) -> list[str]:
    """The URLs of a TUITRAIN_NOTIFY value."""
    return [u for u in _SPLIT.split(text.strip()) if u]


def config_path(env: dict[str, str] | os._Environ | None = None) -> Path:
    """notify.yaml: $TUITRAIN_NOTIFY_CONFIG, else ~/.config/tuitrain/notify.yaml."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_FILE) or DEFAULT_FILE).expanduser()


def load(env: dict[str, str] | os._Environ | None = None) -> Settings:
    """The settings: notify.yaml (when it exists), then TUITRAIN_NOTIFY's URLs added to its
    targets and TUITRAIN_NOTIFY_COMMAND over its command. NotifySettingsError names the fix."""
    env = os.environ if env is None else env
    path = config_path(env)
    data: dict[str, Any] = {}
    sources = []
    if path.is_file():
        data = _read_yaml(path)
        sources.append(str(path))
    elif env.get(ENV_FILE):
        raise NotifySettingsError(
            f"{ENV_FILE}={env[ENV_FILE]!r}: no such file; create it or unset {ENV_FILE}"
        )
    kw = _from_file(data, path)
    targets = list(kw.pop("targets", ()))
    raw = env.get(ENV_URLS, "")
    for url in split_urls(raw):
        _check_url(url, ENV_URLS)
        targets.append(Target(url))
    if raw.strip():
        sources.append(ENV_URLS)
    if env.get(ENV_COMMAND):
        kw["command"] = env[ENV_COMMAND]
        sources.append(ENV_COMMAND)
    return Settings(targets=tuple(targets), source=" + ".join(sources) or "nothing", **kw)


def _read_yaml(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe").load(path.read_text())
    except (OSError, YAMLError) as exc:
        raise NotifySettingsError(f"{path}: cannot read it as YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NotifySettingsError(f"{path}: expected a mapping (targets:, events:, ...)")
    return data


KEYS = {
    "targets", "events", "min_severity", "command", "command_timeout_s", "timeout_s", "retries",
    "backoff_s", "queue_size", "rate_limit",
}  # fmt: skip


def _from_file(data: dict[str, Any], path: Path) -> dict[str, Any]:
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise NotifySettingsError(
            f"{path}: unknown key {unknown[0]!r}; the keys are: {', '.join(sorted(KEYS))}"
        )
    out: dict[str, Any] = {}
    targets = []
    for i, item in enumerate(data.get("targets") or []):
        where = f"{path}: targets[{i}]"
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise NotifySettingsError(
                f"{where}: give an Apprise URL, or {{url: ..., events: [...]}}"
            )
        _check_url(item["url"], where)
        events = item.get("events")
        if events is not None:
            events = frozenset(_event_names(events, f"{where}.events"))
        targets.append(Target(item["url"], events))
    out["targets"] = targets
    ev = data.get("events")
    if ev is not None:
        merged = {k: v[0] for k, v in EVENTS.items()}
        if isinstance(ev, list):  # a list: exactly these
            merged = dict.fromkeys(merged, False) | dict.fromkeys(
                _event_names(ev, f"{path}: events"), True
            )
        elif isinstance(ev, dict):
            for k, v in ev.items():
                _event_names([k], f"{path}: events")
                if not isinstance(v, bool):
                    raise NotifySettingsError(f"{path}: events.{k} must be true or false")
                merged[k] = v
        else:
            raise NotifySettingsError(
                f"{path}: events must be a list of names or a mapping name: true/false"
            )
        out["events"] = merged
    if "min_severity" in data:
        if data["min_severity"] not in SEVERITIES:
            raise NotifySettingsError(
                f"{path}: min_severity must be one of {', '.join(SEVERITIES)}"
            )
        out["min_severity"] = data["min_severity"]
    if data.get("command") is not None:
        if not isinstance(data["command"], str) or not data["command"].strip():
            raise NotifySettingsError(f"{path}: command must be a shell command line (a string)")
        out["command"] = data["command"]
    for key, lo, hi in (
        ("command_timeout_s", 0.1, 600),
        ("timeout_s", 0.1, 600),
        ("backoff_s", 0, 600),
    ):
        if key in data:
            out[key] = _number(data[key], lo, hi, f"{path}: {key}")
    for key, lo, hi in (("retries", 0, 10), ("queue_size", 1, 10_000)):
        if key in data:
            out[key] = int(_number(data[key], lo, hi, f"{path}: {key}", integer=True))
    rl = data.get("rate_limit")
    if rl is not None:
        if not isinstance(rl, dict) or set(rl) - {"per_run", "window_s"}:
            raise NotifySettingsError(f"{path}: rate_limit is {{per_run: N, window_s: S}}")
        if "per_run" in rl:
            out["rate_per_run"] = int(
                _number(rl["per_run"], 1, 1000, f"{path}: rate_limit.per_run", integer=True)
            )
        if "window_s" in rl:
            out["rate_window_s"] = _number(rl["window_s"], 1, 86400, f"{path}: rate_limit.window_s")
    return out


def _number(v: Any, lo: float, hi: float, where: str, integer: bool = False) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and integer:
        ok = float(v).is_integer()
    if not ok or not lo <= v <= hi:
        kind = "a whole number" if integer else "a number"
        raise NotifySettingsError(f"{where} must be {kind} from {lo:g} to {hi:g} (got {v!r})")
    return float(v)


def _event_names(names: Any, where: str) -> list[str]:
    if not isinstance(names, list):
        raise NotifySettingsError(f"{where} must be a list of event names")
    bad = [n for n in names if n not in EVENTS]
    if bad:
        raise NotifySettingsError(
            f"{where}: unknown event {bad[0]!r}; the events are: {', '.join(EVENTS)}"
        )
    return list(names)


def _check_url(url: str, where: str) -> None:
    if not _SCHEME.match(url):
        raise NotifySettingsError(
            f"{where}: {redact(url)!r} is not an Apprise URL (scheme://...), e.g. ntfy://ntfy.sh/TOPIC"
        )


# ---- redaction -------------------------------------------------------------------------------


def redact(url: str) -> str:
    """The URL with everything that may be a token hidden: scheme and host kept (not a host that
    looks like a token, as in slack://TOKEN/...), user, password, path and query shown as ***."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)$", url.strip())
    if not m:
        return "***"
    scheme, netloc, rest = m.groups()
    host = netloc.rpartition("@")[2]
    user = "***@" if "@" in netloc else ""
    name, _, port = host.partition(":")
    if _hostlike(name):
        host = f"{name}:{port}" if port.isdigit() else name + (":***" if port else "")
    else:
        host = "***"
    tail = "/***" if rest.strip("/?#") else ""
    return f"{scheme}://{user}{host}{tail}"


def _hostlike(name: str) -> bool:
    # A host name or address, not a token: dotted labels, localhost, or an IPv6 literal.
    return (
        name == "localhost"
        or name.startswith("[")
        or bool(re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", name))
    )


def secrets_of(url: str) -> list[str]:
    """The parts of a URL that must never be printed (for scrubbing error text), longest first."""
    parts = {url}
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)(.*)$", url.strip())
    if m:
        netloc, rest = m.groups()
        pieces = re.split(r"[@:]", netloc)
        for i, p in enumerate(pieces):
            port = p.isdigit() and i > 0 and _hostlike(pieces[i - 1])
            if not _hostlike(p) and not port:
                parts.add(p)
        parts.update(p for p in re.split(r"[/?#&=]", rest) if len(p) >= 3)
        parts.add(rest)
    return sorted((p for p in parts if p and len(p) >= 3), key=len, reverse=True)


def scrub(text: str, targets: tuple[Target, ...] | list[Target]) -> str:
    """Text (an error message) with every secret part of the targets' URLs replaced by ***."""
    for t in targets:
        for s in secrets_of(t.url):
            text = text.replace(s, "***")
    return text
