"""Bundled configs are reachable as `pkg:tuitrain/configs/NAME.yaml` (checkout or wheel alike)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuitrain.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_pkg_path_is_the_bundled_file():
    a = load_config("pkg:tuitrain/configs/demo.yaml")
    b = load_config(ROOT / "configs" / "demo.yaml")
    assert a.config == b.config
    multi = load_config("pkg:tuitrain/configs/multi-gpu.yaml")  # extends: relative to the file
    assert multi.config.launch.num_processes == 4


def test_bad_pkg_paths_are_config_errors():
    for bad in ("pkg:nopkg/x.yaml", "pkg:tuitrain/configs/nope.yaml", "pkg:"):
        with pytest.raises(ConfigError):
            load_config(bad)
