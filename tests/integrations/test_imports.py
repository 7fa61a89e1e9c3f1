"""Tests that the custom-loop entry points stay light: `import tuitrain` and the API load neither
torch nor Textual (tests/test_imports.py checks that tuitrain.integrations.hf loads no Textual)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
{imports}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""
HEAVY = {"torch", "transformers", "accelerate", "textual", "plotext", "textual_plotext"}


def loaded(imports: str) -> set[str]:
    code = PROBE.format(imports=imports)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(60)
def test_package_and_api_load_neither_torch_nor_textual():
    mods = loaded(
        "import tuitrain\nfrom tuitrain import init, Run\nimport tuitrain.client.lr, tuitrain.client.lifecycle"
    )
    assert "tuitrain" in mods and not mods & HEAVY


@pytest.mark.timeout(60)
def test_lazy_export_resolves_and_unknown_names_fail():
    code = "import tuitrain\nassert tuitrain.init.__module__ == 'tuitrain.client.api'\ntry:\n    tuitrain.nope\nexcept AttributeError as e:\n    print('ok', e)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "ok module 'tuitrain' has no attribute 'nope'" in out.stdout
