"""Provides the doctor: recognises the training symptoms of DOMAIN.md in a run's metrics, explains
them with evidence, offers a remedy and an action (torch-free; used by the CLI, the TUI and the
trainer's rank 0)."""

from tuitrain.doctor.diagnose import diagnose, thresholds_for
from tuitrain.doctor.diagnosis import REMEDIES, SEVERITIES, SYMPTOMS, Action, Diagnosis, most_severe
from tuitrain.doctor.rundata import Curve, RunData, read_run
from tuitrain.doctor.thresholds import Thresholds
from tuitrain.runs import liveness

__all__ = [
    "REMEDIES",
    "SEVERITIES",
    "SYMPTOMS",
    "Action",
    "Curve",
    "Diagnosis",
    "RunData",
    "Thresholds",
    "diagnose",
    "diagnose_run",
    "most_severe",
    "read_run",
    "thresholds_for",
]


def diagnose_run(store, run_ref, now: float | None = None) -> list[Diagnosis]:
    """Read a run from the store and diagnose it (thresholds from its `doctor:` config group);
    an unrecovered spike with a checkpoint before it gets the rollback action."""
    from tuitrain.doctor.rollback import with_rollback

    run = liveness.view_run(store, run_ref) if isinstance(run_ref, str) else run_ref
    th = thresholds_for(run.config or {})
    return with_rollback(diagnose(read_run(store, run, th.window, now), th), run.run_dir)
