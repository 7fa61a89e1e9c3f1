"""Tests that the bring-your-own-script entry points stay light: no Textual, and no torch for the API."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
{imports}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'torch', 'transformers', 'plotext'))))
"""


def loaded(imports: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.mark.timeout(150)
def test_training_side_imports_leave_textual_out():
    tops = loaded(
        "import tuitrain, tuitrain.api, tuitrain.integrations.hf\nfrom tuitrain import init"
    )
    assert "textual" not in tops and "plotext" not in tops
    assert "transformers" in tops  # the probe really imported the HF integration


@pytest.mark.timeout(60)
def test_package_and_api_import_neither_torch_nor_textual():
    assert loaded("import tuitrain\nfrom tuitrain import init, Run\nimport tuitrain.api") == set()
