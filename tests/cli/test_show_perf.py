"""`tuitrain show` prints tokens/s, MFU and the step-time split: the latest window of a live run,
the run's means (summary) once it ended, and the reason when MFU is unknown."""

from __future__ import annotations

from tuitrain.cli import main
from tuitrain.store import Store


def _show(capsys, runs_dir, ref) -> str:
    assert main(["show", "--runs-dir", str(runs_dir), ref]) == 0
    return capsys.readouterr().out


def test_show_live_run_reads_the_latest_window(tmp_path, capsys):
    with Store(tmp_path) as s:
        r = s.create_run({}, {"total_steps": 100}, name="live")
        s.mark_started(r.id, 4242)
        s.update_run(
            r.id, summary={"perf": {"device": "NVIDIA H100 80GB HBM3", "precision": "bf16"}}
        )
        rows = []
        for step, (tps, mfu) in ((10, (9000.0, 0.30)), (20, (12000.0, 0.412))):
            rows += [(step, "tokens_per_s", tps, 0.0), (step, "mfu", mfu, 0.0)]
            rows += [(step, "time/data_s", 0.001, 0.0), (step, "time/compute_s", 0.0485, 0.0)]
            rows += [(step, "time/overhead_s", 0.0005, 0.0)]
        s.log_metrics(r.id, rows)
    out = _show(capsys, tmp_path, "live")
    assert "throughput: 12,000 tokens/s  MFU 41.2% (NVIDIA H100 80GB HBM3, bf16)" in out
    assert "step time: data 1 ms  compute 48.5 ms  overhead 0.5 ms (1.00% overhead)" in out


def test_show_ended_run_reads_the_summary_and_says_why_mfu_is_missing(tmp_path, capsys):
    with Store(tmp_path) as s:
        r = s.create_run({}, {"total_steps": 30}, name="cpu")
        s.mark_started(r.id, 4242)
        s.log_metrics(r.id, [(30, "tokens_per_s", 1.0, 0.0)])  # the summary wins once ended
        summary = {
            "tokens_per_s": 5120.4,
            "mfu_note": "MFU: unknown peak for cpu",
            "time": {"data_s": 0.002, "compute_s": 0.02, "overhead_s": 0.0001},
        }
        s.set_status(r.id, "completed", summary=summary)
        bare = s.create_run({}, {"total_steps": 30}, name="bare")  # nothing logged: no lines
    out = _show(capsys, tmp_path, "cpu")
    assert "throughput: 5,120 tokens/s  MFU: unknown peak for cpu" in out
    assert "step time: data 2 ms  compute 20 ms  overhead 0.1 ms (0.45% overhead)" in out
    out = _show(capsys, tmp_path, bare.id)
    assert "throughput:" not in out and "step time:" not in out
