"""The steering protocol has one table of kinds and payload keys: the store's check, the config's
schedule entries, the trainer's validation and the replay of a run's interventions all read it;
and the table is a leaf the lower layers can import without loading the protocol or the poller."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuitrain.config.schema import STEER_ACTIONS, ScheduledAction
from tuitrain.runs.lineage import replay_schedule
from tuitrain.steering.kinds import KINDS, VALUE_KEYS
from tuitrain.steering.protocol import (
    SteerCommand,
    command_value,
    entry_action,
    schedule_entry,
    validate,
)
from tuitrain.store import COMMAND_KINDS, CommandRefused, Store


def test_one_table_for_store_config_and_protocol():
    assert COMMAND_KINDS is KINDS and STEER_ACTIONS is KINDS
    assert set(KINDS) <= set(ScheduledAction.model_fields)  # a schedule field per kind
    assert VALUE_KEYS == {"set_lr": "lr", "scale_lr": "factor"}


def test_kinds_is_a_leaf():
    code = (
        "import sys, json\nimport tuitrain.steering.kinds\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tuitrain'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == ["tuitrain", "tuitrain.steering", "tuitrain.steering.kinds"]


@pytest.mark.parametrize(
    ("kind", "payload"),
    [("set_lr", {"lr": "abc"}), ("scale_lr", {"factor": 0}), ("set_lr", {}), ("dance", {})],
)
def test_store_and_trainer_refuse_the_same_commands_with_the_same_reason(tmp_path, kind, payload):
    reason = validate(7, kind, payload)
    assert isinstance(reason, str)
    with Store(tmp_path) as store:
        run = store.create_run({}, {})
        with pytest.raises(CommandRefused) as err:
            store.send_command(run.id, kind, payload)
    assert str(err.value) == reason


def test_a_valid_command_carries_its_number():
    assert validate(3, "set_lr", {"lr": "5E-5"}) == SteerCommand(3, "set_lr", 5e-5, {"lr": "5E-5"})
    assert validate(4, "stop", None) == SteerCommand(4, "stop", None, {})
    assert command_value("scale_lr", {"factor": 0.5}) == 0.5 and command_value("eval", {}) is None


def test_schedule_entries_round_trip_through_the_config():
    for kind, value in (("set_lr", 1e-4), ("scale_lr", 0.5), ("stop", None), ("eval", None)):
        entry = schedule_entry(812, kind, value)
        assert entry_action(entry) == (kind, value)
        assert ScheduledAction.model_validate(entry).action == (kind, value)
    items = [{"step": 5, "kind": "checkpoint", "value": None}]
    assert replay_schedule(items) == [{"step": 5, "checkpoint": True}]
    assert entry_action({"step": 3}) is None
