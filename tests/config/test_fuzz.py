"""Fuzz the config loader with random bytes and random YAML: it only ever raises ConfigError."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from tuitrain.config import ConfigError, load_config
from tuitrain.config.schema import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _names(model, out: set[str]) -> set[str]:
    for name, f in model.model_fields.items():
        out.add(name)
        if isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields"):
            _names(f.annotation, out)
    return out


# Real field and group names (and the meta keys) so the fuzz reaches past "unknown key".
KEYS = sorted(_names(TrainConfig, {"extends", "envs", "dev", "pkg:x"}))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([".", "/", "", "pkg:", "pkg:nope/x", "pkg:os.nope/x", "~nouser/x", "a\x00b"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
trees = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(keys, kids, max_size=5)),
    max_leaves=25,
)


def _yaml_text(data) -> str:
    buf = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, buf)
    return buf.getvalue()


def _load(path: Path, **kw) -> None:
    try:
        load_config(path, **kw)
    except ConfigError as exc:
        assert str(exc).startswith("invalid config")


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_config_error(tmp_path, data):
    for suffix in (".yaml", ".json"):
        p = tmp_path / f"c{suffix}"
        p.write_bytes(data)
        _load(p)


@FUZZ
@given(st.dictionaries(keys, trees, max_size=6), st.sampled_from([None, "dev", "x"]))
def test_random_yaml_only_raises_config_error(tmp_path, data, env):
    p = tmp_path / "c.yaml"
    p.write_text(_yaml_text(data), encoding="utf-8")
    _load(p, env=env)


@FUZZ
@given(st.text(max_size=300))
def test_random_text_only_raises_config_error(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load(p)


def test_hostile_yaml_only_raises_config_error(tmp_path):
    """Cases random generation rarely hits: self-referencing aliases, deep nesting, tags."""
    cases = [
        "a: &x [*x]\n",
        "model: &m {arch: *m}\n",
        "[" * 5000 + "]" * 5000 + "\n",
        "optimizer: {lr: !!python/object:os.system echo}\n",
        "optimizer: {lr: !custom 1}\n",
        "extends: 5\n",
        "extends: [1, {a: b}]\n",
        'extends: "a\\0b"\n',
        "envs: [dev]\n",
        "envs: {dev: 3}\n",
        "envs: 7\n",
        "? [a, b]\n: 1\n",
        "<<: {a: 1}\n",
        "model: {name_or_path: 'pkg:os.nope/x'}\n",
        "model: {name_or_path: 'pkg:.rel/x'}\n",
        "data: {source: file, train_file: .}\n",
        "data: {source: file, train_file: /}\n",
        "\ufeffmodel: {tokenizer: bytes}\n",
    ]
    for i, text in enumerate(cases):
        p = tmp_path / f"c{i}.yaml"
        p.write_text(text, encoding="utf-8")
        for env in (None, "dev"):
            _load(p, env=env)


def test_bad_pkg_paths_are_value_errors():
    """resolve() turns ValueError into a ConfigError on model.name_or_path; nothing else escapes."""
    import pytest

    from tuitrain.config.paths import resolve_path

    for value in ("pkg:os.nope/x", "pkg:.rel/x", "pkg:nope.sub/x", "pkg:a\x00b/x", "pkg:"):
        with pytest.raises(ValueError, match="no installed package"):
            resolve_path(value)


def test_binary_file_on_the_cli_is_invalid_config_exit_2(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(bytes(range(256)) * 4)
    out = subprocess.run(
        [sys.executable, "-m", "tuitrain", "validate", str(p)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("invalid config") and str(p) in out.stderr
    assert "UTF-8" in out.stderr and "Traceback" not in out.stderr
