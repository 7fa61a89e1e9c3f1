"""Provides the steering command kinds and the payload key of each kind's number: the one table
that config (steering.schedule entries), the store (send_command's check) and the protocol read.

A leaf on purpose: it imports nothing, so the layers below steering (config, store) may import it
without importing steering's protocol or poller.
"""

from __future__ import annotations

import math

KINDS = ("set_lr", "scale_lr", "stop", "checkpoint", "eval")
# Kinds that carry a number, and the payload key it travels under.
VALUE_KEYS = {"set_lr": "lr", "scale_lr": "factor"}
LR_KINDS = tuple(VALUE_KEYS)


def kind_error(kind: str) -> str | None:
    """Why `kind` is not a command kind, or None."""
    if kind in KINDS:
        return None
    return f"unknown command kind {kind!r}; use one of: {', '.join(KINDS)}"


def value_of(kind: str, payload: dict) -> float | None:
    """The command's number (the LR of set_lr, the factor of scale_lr; None for the others).

    Raises ValueError naming the key when it is missing, not a number, or not finite and > 0."""
    key = VALUE_KEYS.get(kind)
    if key is None:
        return None
    raw = payload.get(key)
    try:
        value = float(raw)  # accepts 5e-5, "5E-5", "0.00005"
    except (TypeError, ValueError):
        raise ValueError(
            f"{kind} needs payload {{{key!r}: number}}, got {key}={raw!r}"
            f" ({key} needs a number, e.g. 5e-5)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{kind}: {key} must be a positive finite number (> 0), got {raw!r}")
    return value
