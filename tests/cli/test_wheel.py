"""`pip install .` (a wheel, not editable) into a fresh venv ships working bundled configs: every
one validates from the installed package as `pkg:tuitrain/configs/NAME.yaml`, data included.

Offline and quick: the wheel is built without build isolation, the venv has no pip of its own,
and the dependencies (torch & co) come from this environment through a .pth line instead of
being installed again. The checkout is not on the path, so only the installed copy is tested."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if "sweep" not in p.name)
DATA = sorted(p.name for p in (ROOT / "configs" / "data").iterdir() if p.is_file())


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{cmd}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building in the checkout would leave build/ there
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "tuitrain", src / "tuitrain", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "configs", src / "configs", symlinks=True, ignore=ignore)
    py = sys.executable
    _run([py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(src)], tmp)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("tuitrain-*.whl")
    venv = tmp / "venv"
    _run([py, "-m", "venv", "--without-pip", str(venv)], tmp)
    vpy = venv / "bin" / "python"
    _run([py, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp)  # fmt: skip
    purelib = _run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
    )
    # A plain path line: this environment's packages, without running its .pth files (so the
    # editable install of the checkout stays out).
    deps = Path(sysconfig.get_paths()["purelib"])
    (Path(purelib.stdout.strip()) / "zz_deps.pth").write_text(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return venv, env


@pytest.mark.e2e
def test_installed_package_is_the_wheel(installed, tmp_path):
    venv, env = installed
    code = "import tuitrain, pathlib; print(pathlib.Path(tuitrain.__file__).resolve())"
    out = _run([str(venv / "bin" / "python"), "-c", code], tmp_path, env)
    assert str(venv.resolve()) in out.stdout, out.stdout  # not the checkout
    pkg = Path(out.stdout.strip()).parent / "configs"
    assert sorted(p.name for p in pkg.glob("*.yaml") if "sweep" not in p.name) == CONFIGS
    assert (pkg / "sweep-demo.yaml").is_file()
    assert sorted(p.name for p in (pkg / "data").iterdir() if p.is_file()) == DATA
    assert "reviews.jsonl" in DATA


@pytest.mark.e2e
@pytest.mark.parametrize("name", CONFIGS)
def test_every_bundled_config_validates_from_the_wheel(installed, tmp_path, name):
    venv, env = installed
    out = _run([str(venv / "bin" / "tuitrain"), "validate", f"pkg:tuitrain/configs/{name}"], tmp_path, env)  # fmt: skip
    assert f"ok: pkg:tuitrain/configs/{name} is valid" in out.stderr
    if name == "seq-cls-minilm.yaml":  # its data file resolved inside the installed package
        assert str(venv.resolve()) in out.stdout and "reviews.jsonl" in out.stdout
