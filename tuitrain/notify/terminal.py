"""Provides the terminal's desktop notification: which escape sequence this terminal understands
(OSC 9, OSC 777, OSC 99, or the bell as the fallback) and the bytes to write, wrapped for tmux's
passthrough (which needs `set -g allow-passthrough on`). Over SSH the sequence travels to the
user's own terminal, which raises the notification on their machine."""

from __future__ import annotations

import os
import re

ENV_MODE = "TUITRAIN_TERM_NOTIFY"  # osc9 | osc777 | osc99 | bell | off; unset: detect
MODES = ("osc9", "osc777", "osc99", "bell", "off")
BODY_MAX = 200
_CTRL = re.compile(r"[\x00-\x1f\x7f\x9b]")


def detect(env: dict[str, str] | os._Environ | None = None) -> str:
    """The mode for this terminal: TUITRAIN_TERM_NOTIFY when set, else from TERM, TERM_PROGRAM,
    LC_TERMINAL (kitty: osc99; iTerm2: osc9; WezTerm, Ghostty, foot, rxvt, VTE: osc777; else
    the bell). Inside tmux the outer terminal is unknown: set TUITRAIN_TERM_NOTIFY there."""
    env = os.environ if env is None else env
    forced = env.get(ENV_MODE, "").strip().lower()
    if forced:
        if forced not in MODES:
            from tuitrain.store.models import InvalidValue  # the CLI prints it, exit 2

            raise InvalidValue(
                f"{ENV_MODE}={forced!r} is not one of {', '.join(MODES)}; fix or unset it"
            )
        return forced
    term, prog = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    lc = env.get("LC_TERMINAL", "")
    if "kitty" in term or env.get("KITTY_WINDOW_ID"):
        return "osc99"
    if prog == "iTerm.app" or lc == "iTerm2":
        return "osc9"
    if prog in ("WezTerm", "ghostty") or "ghostty" in term or env.get("WEZTERM_PANE"):
        return "osc777"
    if term.startswith(("foot", "rxvt")) or env.get("VTE_VERSION"):
        return "osc777"
    return "bell"


def _clean(text: str, limit: int) -> str:
    text = _CTRL.sub(" ", " — ".join(ln.strip() for ln in text.splitlines() if ln.strip()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sequence(mode: str, title: str, body: str, tmux: bool = False) -> str:
    """What to write to the terminal for one notification ("" for off)."""
    title, body = _clean(title, 80), _clean(body, BODY_MAX)
    if mode == "off":
        return ""
    if mode == "bell":
        return "\a"
    if mode == "osc9":
        seq = f"\x1b]9;{title}: {body}\x07"
    elif mode == "osc777":
        seq = f"\x1b]777;notify;{title.replace(';', ',')};{body}\x07"
    elif mode == "osc99":
        seq = f"\x1b]99;i=tuitrain:d=0;{title}\x1b\\\x1b]99;i=tuitrain:d=1:p=body;{body}\x1b\\"
    else:
        raise ValueError(f"unknown terminal notification mode {mode!r}")
    if tmux:
        seq = tmux_wrap(seq)
    return seq + "\a"  # the bell too: a terminal that ignores the OSC still gets attention


def tmux_wrap(seq: str) -> str:
    """Each escape sequence inside a DCS tmux passthrough (ESC doubled inside)."""
    parts = re.findall(r"\x1b\].*?(?:\x07|\x1b\\)", seq, flags=re.S)
    return "".join("\x1bPtmux;" + p.replace("\x1b", "\x1b\x1b") + "\x1b\\" for p in parts)
