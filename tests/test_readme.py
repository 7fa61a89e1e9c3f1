"""The README's two set-up commands exist and .ci/run runs exactly the test one."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "python -m pytest" in ci
    assert ci in readme.splitlines()


def test_readme_main_command_opens_the_demo():
    lines = (ROOT / "README.md").read_text().splitlines()
    main = [
        ln
        for ln in lines
        if ln.startswith("python3 -m venv") and "tuitrain edit configs/demo.yaml" in ln
    ]
    assert len(main) == 1
    assert (ROOT / "configs" / "demo.yaml").is_file()
