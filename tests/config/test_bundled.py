"""Every bundled config loads, validates against the JSON Schema, and the CLI reports errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tuitrain.cli import main
from tuitrain.config import load_config, to_dict
from tuitrain.config.jsonschema import json_schema
from tuitrain.config.loader import read_with_extends

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if "sweep" not in p.name)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_bundled_config_loads(path):
    r = load_config(path)
    assert r.derived.effective_batch >= 1
    envs = read_with_extends(path)[0].get("envs") or {}
    for env in envs:
        load_config(path, env=env)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_bundled_config_matches_json_schema(path):
    jsonschema.validate(read_with_extends(path)[0], json_schema())
    jsonschema.validate(to_dict(load_config(path).config), json_schema())


def test_schema_rejects_typo():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"optimizer": {"lr": 1e-3, "weigth_decay": 0.1}}, json_schema())


def test_every_field_has_help_and_default():
    from pydantic import BaseModel

    from tuitrain.config.schema import TrainConfig

    def walk(model: type[BaseModel], prefix: str):
        for name, f in model.model_fields.items():
            assert f.description and len(f.description) > 10, f"{prefix}{name} has no help text"
            assert not f.is_required(), f"{prefix}{name} has no default"
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")

    walk(TrainConfig, "")


def test_validate_cli_exit_codes(tmp_path, capsys):
    assert main(["validate", str(ROOT / "configs" / "demo.yaml"), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["derived"]["total_steps"] == out["config"]["training"]["max_steps"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer:\n  lr: -1\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: optimizer.lr" in err


def test_cli_entry_points_and_schema():
    out = subprocess.run(
        [sys.executable, "-m", "tuitrain", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    schema = json.loads(out.stdout)
    assert "optimizer" in schema["properties"] and "envs" in schema["properties"]
    bad = subprocess.run(
        [sys.executable, "-m", "tuitrain", "validate", "/nonexistent.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "no such config file" in bad.stderr
