"""Sweep spec, search space and slot checks (no processes)."""

from __future__ import annotations

import math

import pytest

from tuitrain.config import ConfigError
from tuitrain.sweep.slots import make_slots, slot_overrides, visible_gpus
from tuitrain.sweep.space import base_data, check_space, field_at, trial_config
from tuitrain.sweep.spec import parse_spec, read_spec

DEMO = "configs/demo.yaml"


def spec(**over):
    data = {
        "base": DEMO,
        "space": {"optimizer.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}},
    }
    data.update(over)
    return parse_spec(data, "s.yaml")


def test_shorthands_and_defaults():
    s = parse_spec(
        {
            "base": DEMO,
            "space": {"model.arch.num_layers": [1, 2]},
            "objective": "val_accuracy",
            "method": "grid",
        }
    )
    assert s.space["model.arch.num_layers"].type == "choice"
    assert s.objective.direction() == "maximize"
    assert s.prune_enabled() is False
    assert spec().prune_enabled() is True
    assert spec().objective.direction() == "minimize"


def test_typo_in_spec_key_names_field_and_fix():
    with pytest.raises(ConfigError) as e:
        parse_spec({"base": DEMO, "space": {"optimizer.lr": [1e-3]}, "methd": "grid"}, "s.yaml")
    issue = e.value.issues[0]
    assert issue.path == "methd" and "method" in issue.fix


def test_bad_distributions():
    for bad, word in [
        ({"type": "loguniform", "low": 0, "high": 1}, "low > 0"),
        ({"type": "uniform", "low": 2, "high": 1}, "below high"),
        ({"type": "choice"}, "values"),
        ({"type": "int", "low": 1.5, "high": 3}, "whole-number"),
    ]:
        with pytest.raises(ConfigError) as e:
            spec(space={"optimizer.lr": bad})
        assert word in str(e.value), str(e.value)
        assert e.value.issues[0].path.startswith("space.optimizer.lr")


def test_grid_values():
    s = spec(
        method="grid",
        space={
            "optimizer.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2, "num": 3},
            "batch.size": {"type": "int", "low": 4, "high": 16, "step": 4},
        },
    )
    lr = s.space["optimizer.lr"].grid_values()
    assert [round(math.log10(v), 6) for v in lr] == [-4, -3, -2]
    assert s.space["batch.size"].grid_values() == [4, 8, 12, 16]
    assert s.grid_size() == 12
    with pytest.raises(ValueError, match="num"):
        spec(
            method="grid", space={"optimizer.lr": {"type": "uniform", "low": 0.1, "high": 0.2}}
        ).grid_size()


def test_dotted_paths_checked_against_config():
    model, name = field_at("model.arch.hidden_size")
    assert name == "hidden_size"
    with pytest.raises(ConfigError) as e:
        field_at("optimizer.learning_rate")
    assert e.value.issues[0].path == "space.optimizer.learning_rate"
    with pytest.raises(ConfigError, match="did you mean 'optimizer.lr'"):
        field_at("optimizer.lrr")
    with pytest.raises(ConfigError, match="is a group"):
        field_at("optimizer")


def test_space_values_checked_per_field(tmp_path):
    s = spec(
        space={
            "optimizer.lr": {"type": "uniform", "low": 0.1, "high": 20.0},
            "training.mixed_precision": ["no", "fp8"],
        }
    )
    base = base_data(s, "s.yaml")
    with pytest.raises(ConfigError) as e:
        check_space(s, base, "s.yaml")
    paths = sorted(i.path for i in e.value.issues)
    assert paths == ["space.optimizer.lr", "space.training.mixed_precision"]
    assert "20.0" in str(e.value) and "fp8" in str(e.value)


def test_base_relative_to_sweep_file_and_trial_config(tmp_path):
    sweep = tmp_path / "sub" / "s.yaml"
    sweep.parent.mkdir()
    (tmp_path / "sub" / "b.yaml").write_text(
        "extends: "
        + str(__import__("pathlib").Path(DEMO).resolve())
        + "\ntraining: {max_steps: 7}\n"
    )
    sweep.write_text(
        "base: b.yaml\nset: ['model.arch.hidden_size=32', 'model.arch.num_layers=1']\nspace:\n  optimizer.lr: [1e-3, 1e-2]\n"
    )
    s = read_spec(sweep)
    base = base_data(s, sweep)
    r = trial_config(base, {"optimizer.lr": 1e-2}, {"run.tags": ["x"]})
    assert r.config.optimizer.lr == 1e-2 and r.config.training.max_steps == 7
    assert r.config.model.arch.hidden_size == 32 and r.config.run.tags == ["x"]
    # a sampled combination that clashes across fields fails that trial only, with the field named
    with pytest.raises(ConfigError, match="num_heads"):
        trial_config(base, {"model.arch.num_heads": 5})
    missing = tmp_path / "m.yaml"
    missing.write_text("base: nope.yaml\nspace: {optimizer.lr: [1e-3]}\n")
    with pytest.raises(ConfigError, match="base config not found"):
        base_data(read_spec(missing), missing)


def test_slots_cpu_and_gpu():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    cpu = make_slots(2, 1, [], cpu_count=8)
    assert len(cpu) == 2 and all(int(s.env["OMP_NUM_THREADS"]) <= 4 for s in cpu)
    gpu = make_slots("auto", 2, ["0", "1", "2", "3", "4"])
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in gpu] == ["0,1", "2,3"]
    assert make_slots(1, 1, ["0", "1"])[0].gpus == ["0"]
    assert slot_overrides(gpu[1], 29500) == {
        "launch.main_process_port": 29501,
        "launch.gpu_ids": None,
    }
    with pytest.raises(ValueError, match="gpus_per_trial"):
        make_slots(1, 4, ["0"])


def test_bundled_sweep_demo_is_valid():
    s = read_spec("configs/sweep-demo.yaml")
    base = base_data(s, "configs/sweep-demo.yaml")
    check_space(s, base, "configs/sweep-demo.yaml")
    assert (s.n_trials or s.grid_size()) >= 4


def test_cli_rejects_bad_sweeps_with_exit_2_before_any_run(tmp_path, capsys):
    from tuitrain.cli import main

    demo = str(__import__("pathlib").Path(DEMO).resolve())
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {demo}\nspace:\n  optimizer.lrr: [1e-3]\n")
    assert main(["sweep", str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "space.optimizer.lrr" in err and "did you mean 'optimizer.lr'" in err
    bad.write_text(f"base: {demo}\nspace:\n  optimizer.lr: [1e-3]\nparallel: 0\n")
    assert main(["sweep", str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "parallel" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tuitrain.db").exists()


def test_space_sampling_both_fields_of_an_exclusive_pair_is_refused():
    with pytest.raises(ConfigError) as e:
        parse_spec(
            {
                "base": DEMO,
                "space": {"scheduler.warmup_steps": [0, 50], "scheduler.warmup_ratio": [0.1]},
            },
            "s.yaml",
        )
    msg = str(e.value)
    assert "scheduler.warmup_ratio" in msg and "scheduler.warmup_steps" in msg
    assert "exclude each other" in msg
