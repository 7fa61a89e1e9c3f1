"""Test that a runs directory the store cannot open is reported, not shown as an empty list."""

from __future__ import annotations

import time

from tests.tui.conftest import aio, make_app


@aio
async def test_runs_dir_that_cannot_be_opened_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a directory\n")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        deadline = time.monotonic() + 20.0
        while not any("cannot open runs" in str(n.message) for n in app._notifications):
            if time.monotonic() > deadline:
                raise AssertionError("no notification about the runs directory")
            await pilot.pause(0.02)
        (note,) = [n for n in app._notifications if "cannot open runs" in str(n.message)]
        assert note.severity == "error" and "runs" in note.message
