"""Mutually exclusive fields: a later layer that sets one clears the other; one layer setting
both is an error; the help texts, the rule and the JSON Schema say the same for every pair."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from tuitrain.cli import main
from tuitrain.config import ConfigError, load_config, parse
from tuitrain.config.jsonschema import json_schema
from tuitrain.config.loader import deep_merge
from tuitrain.config.overrides import set_dotted
from tuitrain.config.rules import EXCLUSIVE, field_default
from tuitrain.config.schema import TrainConfig

ROOT = Path(__file__).resolve().parents[2]

# A valid non-default value for every field of every pair: a pair added to EXCLUSIVE without
# one here fails test_every_pair_has_samples, so the checks below cover it too.
SAMPLE = {"scheduler.warmup_steps": 5, "scheduler.warmup_ratio": 0.1}

BASE = """\
model:
  tokenizer: bytes
  arch: {hidden_size: 32, num_layers: 1, num_heads: 2}
data:
  source: python-stdlib
  max_bytes: 20000
  max_seq_length: 64
training:
  max_steps: 50
"""


def nested(path: str, value) -> dict:
    out: dict = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def get(cfg: TrainConfig, path: str):
    node = cfg
    for part in path.split("."):
        node = getattr(node, part)
    return node


def plain_merge(x: dict, y: dict) -> dict:
    """Both layers' keys in one dict (as one file holding both would be)."""
    out = dict(x)
    for k, v in y.items():
        out[k] = plain_merge(out[k], v) if isinstance(v, dict) and k in out else v
    return out


def yaml_of(*pairs: tuple[str, object]) -> str:
    """YAML lines for dotted keys (only two levels here: group.field)."""
    groups: dict[str, list[str]] = {}
    for path, value in pairs:
        g, f = path.split(".")
        groups.setdefault(g, []).append(f"  {f}: {value}")
    return "".join(f"{g}:\n" + "\n".join(lines) + "\n" for g, lines in groups.items())


def test_every_pair_has_samples():
    for a, b in EXCLUSIVE:
        assert a in SAMPLE and b in SAMPLE
        assert SAMPLE[a] != field_default(a) and SAMPLE[b] != field_default(b)


def test_the_table_lists_every_pair_the_help_texts_name():
    """A field whose help says `Excludes X` is in EXCLUSIVE with X, and the other way round."""
    said = set()

    def walk(model, prefix):
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{prefix}{name}.")
            m = re.search(r"Excludes ([\w.]+)", f.description or "")
            if m:
                said.add(frozenset((f"{prefix}{name}", f"{prefix}{m.group(1)}")))

    walk(TrainConfig, "")
    assert said == {frozenset(p) for p in EXCLUSIVE}


@pytest.mark.parametrize("pair", EXCLUSIVE, ids="|".join)
def test_help_rule_and_schema_agree(pair):
    a, b = pair
    for mine, other in ((a, b), (b, a)):
        help_text = get_field(mine).description
        assert f"Excludes {other.rsplit('.', 1)[1]}" in help_text
        assert "later layer" in help_text and "clears the other" in help_text
        assert "one file setting both is an error" in help_text
    both = plain_merge(nested(a, SAMPLE[a]), nested(b, SAMPLE[b]))
    # JSON Schema: one file (or one env overlay) with both is invalid; each alone is fine.
    schema = json_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(both, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"envs": {"dev": both}}, schema)
    jsonschema.validate(nested(a, SAMPLE[a]), schema)
    jsonschema.validate(nested(b, SAMPLE[b]), schema)
    # The rule: a parsed dict is one layer, so both is an error naming both fields.
    data = deep_merge(BASE_DATA, both)
    with pytest.raises(ConfigError) as exc:
        parse(data)
    (issue,) = [i for i in exc.value.issues if b in i.message]
    assert a in issue.message and "later layer" in issue.fix


def get_field(path: str):
    model = TrainConfig
    *groups, leaf = path.split(".")
    for g in groups:
        model = model.model_fields[g].annotation
    return model.model_fields[leaf]


BASE_DATA = {
    "model": {"tokenizer": "bytes", "arch": {"hidden_size": 32, "num_layers": 1, "num_heads": 2}},
    "data": {"source": "python-stdlib", "max_bytes": 20000, "max_seq_length": 64},
    "training": {"max_steps": 50},
}


def test_set_wins_over_the_file_demo():
    """The issue's example: the demo sets warmup_ratio, --set warmup_steps=0 must pass."""
    demo = ROOT / "configs" / "demo.yaml"
    r = load_config(demo, sets=["scheduler.warmup_steps=0"])
    assert r.config.scheduler.warmup_steps == 0
    assert r.config.scheduler.warmup_ratio == 0.0
    assert r.derived.warmup_steps == 0
    assert main(["validate", str(demo), "--set", "scheduler.warmup_steps=0"]) == 0


@pytest.mark.parametrize("pair", EXCLUSIVE, ids="|".join)
@pytest.mark.parametrize("order", ["ab", "ba"])
def test_every_layer_kind_clears_the_earlier_partner(tmp_path, pair, order):
    first, later = pair if order == "ab" else pair[::-1]
    base = tmp_path / "base.yaml"
    base.write_text(BASE + yaml_of((first, SAMPLE[first])))
    assert get(load_config(base).config, first) == SAMPLE[first]

    # an extends child
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\n" + yaml_of((later, SAMPLE[later])))
    cfg = load_config(child).config
    assert get(cfg, later) == SAMPLE[later] and get(cfg, first) == field_default(first)

    # an env overlay (in the same file as the earlier value, or in the child)
    g, f = later.split(".")
    withenv = tmp_path / "env.yaml"
    withenv.write_text(
        BASE
        + yaml_of((first, SAMPLE[first]))
        + f"envs:\n  dev:\n    {g}: {{{f}: {SAMPLE[later]}}}\n"
    )
    assert get(load_config(withenv).config, first) == SAMPLE[first]  # no env: the file's own
    cfg = load_config(withenv, env="dev").config
    assert get(cfg, later) == SAMPLE[later] and get(cfg, first) == field_default(first)

    # --set
    cfg = load_config(base, sets=[f"{later}={SAMPLE[later]}"]).config
    assert get(cfg, later) == SAMPLE[later] and get(cfg, first) == field_default(first)

    # a --set of the earlier field after an env that set the later one: --set is later still
    cfg = load_config(withenv, env="dev", sets=[f"{first}={SAMPLE[first]}"]).config
    assert get(cfg, first) == SAMPLE[first] and get(cfg, later) == field_default(later)

    # one edit (the editor and sweeps set fields through set_dotted)
    data = deep_merge(BASE_DATA, nested(first, SAMPLE[first]))
    assert set_dotted(data, later, SAMPLE[later]) == [first]
    cfg = parse(data)
    assert get(cfg, later) == SAMPLE[later] and get(cfg, first) == field_default(first)


@pytest.mark.parametrize("pair", EXCLUSIVE, ids="|".join)
def test_a_single_layer_setting_both_is_an_error(tmp_path, pair):
    a, b = pair
    both = yaml_of((a, SAMPLE[a]), (b, SAMPLE[b]))
    one = tmp_path / "one.yaml"
    one.write_text(BASE + both)
    with pytest.raises(ConfigError) as exc:
        load_config(one)
    (issue,) = exc.value.issues
    assert issue.file == str(one) and issue.line is not None and issue.path == a

    # an extends base that sets both is wrong in itself, even if the child fixes it
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: one.yaml\n{yaml_of((a, SAMPLE[a]))}")
    with pytest.raises(ConfigError) as exc:
        load_config(child)
    assert exc.value.issues[0].file == str(one)

    # one env overlay that sets both
    g = a.split(".")[0]
    fa, fb = a.split(".")[1], b.split(".")[1]
    envfile = tmp_path / "env.yaml"
    envfile.write_text(BASE + f"envs:\n  dev:\n    {g}: {{{fa}: {SAMPLE[a]}, {fb}: {SAMPLE[b]}}}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(envfile, env="dev")
    assert (
        exc.value.issues[0].path == f"envs.dev.{a}"
        and exc.value.issues[0].line == BASE.count("\n") + 3
    )

    # the --set list is one layer too
    plain = tmp_path / "plain.yaml"
    plain.write_text(BASE)
    with pytest.raises(ConfigError) as exc:
        load_config(plain, sets=[f"{a}={SAMPLE[a]}", f"{b}={SAMPLE[b]}"])
    assert exc.value.issues[0].file == "--set"


def test_resetting_to_the_default_does_not_clear(tmp_path):
    """A layer that writes a field's default value does not set it, so its partner stays."""
    base = tmp_path / "base.yaml"
    base.write_text(BASE + "scheduler:\n  warmup_ratio: 0.1\n")
    cfg = load_config(base, sets=["scheduler.warmup_steps=null"]).config
    assert cfg.scheduler.warmup_ratio == 0.1 and cfg.scheduler.warmup_steps is None
