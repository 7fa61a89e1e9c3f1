"""Provides the tuitrain package: `tuitrain.init()` for custom training loops, exported lazily.

PEP 562 `__getattr__` keeps `import tuitrain` light: it loads neither Textual nor torch, so a
training script can import it without paying for the TUI (and the TUI without paying for torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuitrain.client.api import Run, init

__all__ = ["Run", "init"]
_LAZY = {"init": "tuitrain.client.api", "Run": "tuitrain.client.api"}


def __getattr__(name: str) -> Any:
    """Import the custom-loop API on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tuitrain' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module attributes, including the lazy ones."""
    return sorted(set(globals()) | set(__all__))
