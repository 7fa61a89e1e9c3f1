"""The notifier stays light and in its layer: importing it (and `tuitrain notify`) loads no ML
stack and no Textual; the run config's `notify.events` are exactly the notifier's events."""

from __future__ import annotations

import typing

import pytest

from tests.test_boundaries import ML, TUI, loaded_after
from tuitrain.config.schema import NotifyEvent
from tuitrain.notify.settings import EVENTS


@pytest.mark.parametrize(
    "code",
    [
        "import tuitrain.notify.daemon, tuitrain.notify.rules, tuitrain.notify.deliver",
        "from tuitrain.notify.daemon import serve\nimport tuitrain.cli.notify_cmds",
        "import tuitrain.notify.terminal",
    ],
)
def test_notifier_loads_no_ml_stack_and_no_textual(code):
    assert not loaded_after(code) & (set(ML) | set(TUI))


def test_config_events_are_the_notifier_events():
    assert set(typing.get_args(NotifyEvent)) == set(EVENTS)
