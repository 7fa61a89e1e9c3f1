"""Provides steering: the command protocol (kinds, payloads, validation, replay) and the poller
that delivers commands to every rank at the same optimizer step.

    kinds     the kinds and payload keys (a leaf: config and the store import it)
    protocol  SteerCommand, validate(), schedule entries <-> commands
    poller    SteeringPoller, StoreSource

Names are exported lazily (PEP 562): importing `tuitrain.steering.kinds` from a lower layer
loads neither the protocol nor the poller.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KINDS": "kinds",
    "LR_KINDS": "kinds",
    "VALUE_KEYS": "kinds",
    "SIGTERM_KIND": "protocol",
    "SteerCommand": "protocol",
    "validate": "protocol",
    "CommandSource": "poller",
    "StoreSource": "poller",
    "SteeringPoller": "poller",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuitrain.steering' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tuitrain.steering.{module}"), name)
