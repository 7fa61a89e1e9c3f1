"""Provides app_of: the running TuitrainApp of a screen or widget, typed (Textual types `node.app`
as App), so screens reach runs_dir, settings, the clock and navigation without `type: ignore`.

The app module is imported for type checking only: app.py opens the screens, the screens use
the app through this, and no import runs in a circle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from tuitrain.tui.app import TuitrainApp


def app_of(node: Any) -> TuitrainApp:
    """`node.app`, as the TuitrainApp it is."""
    return cast("TuitrainApp", node.app)
