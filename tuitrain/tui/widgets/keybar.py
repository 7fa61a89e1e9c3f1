"""Provides KeyBar: a footer that shows a screen's keys most-used first, as many as fit whole
(shorter labels when narrow, never a label cut mid-word), and always `? keys` for the rest."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

HELP_ACTION = "help"  # the app's binding (`?` / F1)
# Shorter labels for narrow terminals (a label not listed here keeps its first word).
SHORT = {
    "Apply race LR": "Race LR",
    "Branch race winner": "Race br",
    "Clear filter": "Clear",
    "Compare marked": "Cmp",
    "Edit config": "Edit",
    "Find field": "Find",
    "Next chart": "Next",
    "New config": "New",
    "Open trial": "Open",
    "Use suggestion": "Use",
    "Set LR": "LR=",
    "LR up": "LR+",
    "LR down": "LR-",
    "LR race": "Race",
    "LR find": "LRfind",
    "Tree view": "Tree",
}


def short(description: str) -> str:
    """The narrow form of a key's label."""
    return SHORT.get(description) or description.split(" ", 1)[0]


def _width(key: str, label: str) -> int:
    return len(key) + 1 + len(label) + 1  # "k Label" plus the gap after it


class KeyBar(Footer):
    """The footer of every tuitrain screen (binding order = priority; `?` lists them all)."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("show_command_palette", False)  # ctrl+p is listed by `?`
        super().__init__(compact=True, **kwargs)
        self._width = 0

    def shown(self, width: int) -> list[tuple[Binding, str, str, bool]]:
        """(binding, key text, label, enabled) of the keys that fit in `width` cells."""
        # The screen's own bindings in their order (a focused widget may bind the same key,
        # e.g. a table's enter, and hide it from active_bindings; the screen still acts on it).
        seen: set[str] = set()
        items: list[tuple[Binding, str, bool]] = []
        for binding in self.screen.BINDINGS:
            if not isinstance(binding, Binding) or not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            key = binding.key_display or self.app.get_key_display(
                Binding(binding.key.split(",")[0], binding.action)
            )
            items.append((binding, key, True))
        help_item = None
        for _, binding, enabled, _tip in self.screen.active_bindings.values():
            if binding.action == HELP_ACTION:
                help_item = (binding, "?", enabled)
        room = width - (_width(help_item[1], "keys") if help_item else 0)
        full = [(b, k, b.description, e) for b, k, e in items]
        out = full
        if sum(_width(k, d) for _, k, d, _ in full) > room:
            out = [(b, k, short(b.description), e) for b, k, e in items]
        fitted: list[tuple[Binding, str, str, bool]] = []
        used = 0
        for item in out:
            w = _width(item[1], item[2])
            if used + w > room:
                break  # whole keys only, in priority order: the rest are under `?`
            fitted.append(item)
            used += w
        if help_item:
            fitted.append((help_item[0], help_item[1], "keys", help_item[2]))
        return fitted

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        for binding, key, label, enabled in self.shown(self._width or self.size.width or 80):
            yield FooterKey(
                binding.key.split(",")[0], key, label, binding.action, disabled=not enabled
            ).data_bind(compact=Footer.compact)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:
            self._width = event.size.width
            self.call_after_refresh(self.recompose)
