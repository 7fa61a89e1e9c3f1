"""Tests for config loading: YAML/JSON, extends, envs, --set, errors with file/field/line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuitrain.config import ConfigError, load_config, parse
from tuitrain.config.dump import dump_yaml, loads_yaml
from tuitrain.config.loader import read_with_extends
from tuitrain.config.overrides import apply_sets, parse_scalar

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


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text", ["5e-5", "5E-5", "5.0e-05", "0.00005", "5.e-5", "+5e-5"])
def test_scientific_notation_everywhere(tmp_path, text):
    p = write(tmp_path, "c.yaml", BASE + f"optimizer:\n  lr: {text}\n")
    assert load_config(p).config.optimizer.lr == pytest.approx(5e-5)
    assert load_config(
        write(tmp_path, "d.yaml", BASE), sets=[f"optimizer.lr={text}"]
    ).config.optimizer.lr == pytest.approx(5e-5)
    assert parse_scalar(text) == pytest.approx(5e-5)


def test_json_config(tmp_path):
    data = loads_yaml(BASE)
    data["optimizer"] = {"lr": "5e-5"}
    p = write(tmp_path, "c.json", json.dumps(data))
    assert load_config(p).config.optimizer.lr == pytest.approx(5e-5)


def test_unknown_key_did_you_mean_with_line(tmp_path):
    p = write(tmp_path, "c.yaml", BASE + "optimizer:\n  lr: 1e-3\n  weigth_decay: 0.1\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    (issue,) = ei.value.issues
    assert issue.path == "optimizer.weigth_decay"
    assert issue.line == 12
    assert issue.file == str(p)
    assert "optimizer.weight_decay" in issue.fix
    assert f"{p}:12" in str(ei.value)


def test_unknown_group_lists_known(tmp_path):
    p = write(tmp_path, "c.yaml", BASE + "optimiser:\n  lr: 1e-3\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert ei.value.issues[0].path == "optimiser"
    assert "optimizer" in ei.value.issues[0].fix


def test_all_errors_reported_at_once(tmp_path):
    p = write(
        tmp_path, "c.yaml", BASE + "optimizer:\n  lr: fast\n  name: adamx\nbatch:\n  size: 0\n"
    )
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    paths = {i.path for i in ei.value.issues}
    assert paths == {"optimizer.lr", "optimizer.name", "batch.size"}
    lr = ei.value.by_path()["optimizer.lr"]
    assert "5e-5" in lr.fix and lr.line == 11


def test_bad_yaml_syntax_names_line(tmp_path):
    p = write(tmp_path, "c.yaml", "model:\n  task: [causal-lm\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert "not valid YAML" in str(ei.value)
    assert ei.value.issues[0].line is not None


def test_extends_and_override(tmp_path):
    write(tmp_path, "base.yaml", BASE + "optimizer:\n  lr: 1e-3\n  weight_decay: 0.1\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\noptimizer:\n  lr: 3e-4\n")
    cfg = load_config(child).config
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.optimizer.weight_decay == pytest.approx(0.1)
    assert cfg.model.arch.hidden_size == 32


def test_extends_chain_and_cycle(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circular extends"):
        read_with_extends(tmp_path / "a.yaml")
    write(tmp_path, "c.yaml", "extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="base file not found"):
        load_config(tmp_path / "c.yaml")


def test_envs_overlay(tmp_path):
    p = write(
        tmp_path,
        "c.yaml",
        BASE + "envs:\n  dev:\n    training: {max_steps: 5}\n  prod:\n    batch: {size: 64}\n",
    )
    assert load_config(p).config.training.max_steps == 50
    assert load_config(p, env="dev").config.training.max_steps == 5
    assert load_config(p, env="prod").config.batch.size == 64
    with pytest.raises(ConfigError, match="no environment 'test'.*dev, prod"):
        load_config(p, env="test")


def test_set_overrides_types_and_errors(tmp_path):
    p = write(tmp_path, "c.yaml", BASE)
    r = load_config(
        p,
        sets=[
            "batch.size=4",
            "training.mixed_precision=bf16",
            "peft.target_modules=[q_proj, v_proj]",
            "run.name=x y",
        ],
    )
    assert r.config.batch.size == 4
    assert r.config.peft.target_modules == ["q_proj", "v_proj"]
    assert r.config.run.name == "x y"
    with pytest.raises(ConfigError) as ei:
        load_config(p, sets=["optimizer.lr=abc"])
    assert ei.value.issues[0].path == "optimizer.lr"
    assert ei.value.issues[0].file == "--set"
    with pytest.raises(ConfigError, match="did you mean 'batch.size'"):
        load_config(p, sets=["batch.sise=4"])
    with pytest.raises(ConfigError, match="group.key=value"):
        apply_sets({}, ["optimizer.lr"])


def test_relative_data_paths_follow_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "d.txt").write_text("hello world\n" * 200)
    p = write(
        tmp_path / "cfg", "c.yaml", BASE.replace("source: python-stdlib", "train_file: d.txt")
    )
    monkeypatch.chdir(tmp_path)
    r = load_config(p)
    assert Path(r.config.data.train_file) == (tmp_path / "cfg" / "d.txt").resolve()


def test_missing_data_file_names_field(tmp_path):
    p = write(tmp_path, "c.yaml", BASE.replace("source: python-stdlib", "train_file: nope.jsonl"))
    assert load_config(p).derived.train_samples is None  # the config layer reads no data file
    from tuitrain.data.estimate import load_with_data  # what validate, run and the editor call

    with pytest.raises(ConfigError) as ei:
        load_with_data(p)
    assert ei.value.issues[0].path == "data.train_file"
    assert ei.value.issues[0].line == 5


def test_written_config_loads_back_equal(tmp_path):
    r = load_config(write(tmp_path, "c.yaml", BASE + "optimizer:\n  lr: 5e-5\n"))
    text = dump_yaml(r.config)
    assert "%YAML" not in text
    assert parse(loads_yaml(text)) == r.config
