"""Property test: any config the model accepts round-trips through YAML unchanged."""

from __future__ import annotations

import types
import typing
from typing import Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tuitrain.config import ConfigError, dump_yaml, loads_yaml, parse
from tuitrain.config.schema import TrainConfig

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


def bounds(meta: list) -> dict:
    out: dict = {}
    for m in meta:
        if isinstance(m, Ge):
            out["min_value"] = m.ge
        elif isinstance(m, Gt):
            out["min_value"], out["exclude_min"] = m.gt, True
        elif isinstance(m, Le):
            out["max_value"] = m.le
        elif isinstance(m, Lt):
            out["max_value"], out["exclude_max"] = m.lt, True
        elif isinstance(m, MaxLen):
            out["max_size"] = min(m.max_length, 20)
        elif isinstance(m, MinLen):
            out["min_size"] = m.min_length
    return out


def strategy_for(ann, meta: list) -> st.SearchStrategy:
    origin = get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(
            *(strategy_for(a, meta if a is not type(None) else []) for a in get_args(ann))
        )
    if ann is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(get_args(ann))
    if origin is list:
        (item,) = get_args(ann) or (str,)
        return st.lists(text if item is str else strategy_for(item, []), max_size=3)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return model_strategy(ann)
    b = bounds(meta)
    if ann is bool:
        return st.booleans()
    if ann is int:
        b.pop("exclude_min", None), b.pop("exclude_max", None)
        lo = b.get("min_value", -(10**9))
        hi = b.get("max_value", 10**9)
        return st.integers(min_value=lo, max_value=hi)
    if ann is float:
        return st.floats(
            allow_nan=False, allow_infinity=False, **{k: v for k, v in b.items() if k != "max_size"}
        )
    if ann is str:
        return st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
            min_size=b.get("min_size", 0),
            max_size=b.get("max_size", 20),
        )
    raise TypeError(f"no strategy for {ann}")


def model_strategy(model: type[BaseModel]) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {
            name: strategy_for(f.annotation, list(f.metadata))
            for name, f in model.model_fields.items()
        }
    )


BASE = parse({"model": {"tokenizer": "bytes"}, "data": {"source": "python-stdlib"}})
# Resetting a flagged field sometimes has to reset its partner too (the rule names one of the two).
PARTNERS = {
    "model.tokenizer": ["model.name_or_path"],
    "peft.method": ["model.name_or_path", "model.tokenizer"],
    "launch.num_processes": ["launch.num_machines"],
    "launch.main_process_ip": ["launch.num_machines"],
    "launch.machine_rank": ["launch.num_machines"],
    "data.train_file": ["data.source"],
    "data.source": ["model.task"],
    "model.arch.max_position_embeddings": ["data.max_seq_length"],
}


def reset(data: dict, path: str) -> None:
    """Put the field at dotted `path` back to the base config's value."""
    node, ref = data, BASE.model_dump()
    parts = path.split(".")
    if any(p.isdigit() for p in parts):  # an item of a list field (doctor.auto.0): reset the field
        parts = parts[: next(i for i, p in enumerate(parts) if p.isdigit())]
    *parents, leaf = parts
    for part in parents:
        node, ref = node[part], ref[part]
    node[leaf] = ref[leaf]


def repaired(data: dict):
    """Reset the fields that cross-field rules flag until the config parses (or give up)."""
    for _ in range(5):
        try:
            return parse(data)
        except ConfigError as exc:
            for issue in exc.issues:
                for path in [issue.path, *PARTNERS.get(issue.path, [])]:
                    if path:
                        reset(data, path)
    return None


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(model_strategy(TrainConfig))
def test_accepted_configs_roundtrip_through_yaml(data):
    cfg = repaired(data)
    assume(cfg is not None)
    again = parse(loads_yaml(dump_yaml(cfg)))
    assert again == cfg
