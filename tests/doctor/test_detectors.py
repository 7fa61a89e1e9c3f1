"""Tests of each detector as a pure function on constructed curves: it fires on its symptom with
the right severity, step and evidence, and stays quiet on a healthy curve."""

from __future__ import annotations

import math
import random

from tuitrain.doctor import answers, efficiency, progress
from tuitrain.doctor import detectors as det
from tuitrain.doctor.stats import mad, median, robust_z, step_noise
from tuitrain.doctor.thresholds import Thresholds

from . import curves

TH = Thresholds()


def healthy(n: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """A healthy constructed run as lists (steps 1..n)."""
    rng = random.Random(seed)
    pts = [curves.healthy_point(s, rng) for s in range(1, n + 1)]
    return {k: [p[k] for p in pts] for k in pts[0]} | {"steps": list(range(1, n + 1))}


def test_stats_basics():
    assert median([3, 1, 2, math.nan]) == 2
    assert mad([1, 2, 3, 4, 100]) == 1
    assert robust_z(10, 0, 0, floor=2) == 5  # the floor stands in for a zero MAD
    # White noise of sd 1 on a steep trend: the trend does not count as noise.
    rng = random.Random(1)
    xs = [100 - 0.5 * i + rng.gauss(0, 1) for i in range(2000)]
    assert 0.85 < step_noise(xs) < 1.15


def test_quiet_on_healthy_curves():
    for seed in range(5):
        h = healthy(seed=seed)
        s, loss, g = h["steps"], h["loss"], h["grad_norm"]
        for lo in range(0, 1000, 100):
            w = slice(lo, lo + 200)
            assert det.exploding_gradients(s[w], g[w], TH, 1.0) is None, (seed, lo)
            assert det.loss_spike(s[w], loss[w], TH) is None, (seed, lo)
            assert det.oscillation(s[w], loss[w], TH) is None, (seed, lo)
        assert progress.slow_convergence(loss[:5], s[-200:], loss[-200:], 1000, 50, TH) is None
        assert efficiency.clipping_saturated(s[-200:], g[-200:], 1.0, 50, TH) is None
        assert (
            efficiency.throughput_drop(h["tokens_per_s"], s, h["tokens_per_s"], "tokens_per_s", TH)
            is None
        )


def test_exploding_gradients_spike_and_nan():
    h = healthy()
    s, g = h["steps"][:300], h["grad_norm"][:300]
    g[250] = 41.2  # one spike, then back to normal
    d = det.exploding_gradients(s, g, TH, 1.0)
    assert d is not None and d.id == "exploding_gradients"
    assert d.step == 251 and d.values["grad_norm"] == 41.2
    # 20x the ratio threshold, but one sample (issue 24: a single sample never makes a CRITICAL)
    assert d.values["ratio"] > 20 and d.severity == "warning"
    assert "grad norm 41.2 at step 251" in d.evidence and "median 0.67 over the 20" in d.evidence
    assert d.action is not None and d.action.label == "scale_lr 0.5"
    g1 = list(g)
    g1[251] = 39.0  # the same size over two samples: critical
    assert det.exploding_gradients(s, g1, TH, 1.0).severity == "critical"
    # A moderate single spike that came back: a warning.
    g2 = list(h["grad_norm"][:300])
    g2[250] = g2[249] * 8
    d2 = det.exploding_gradients(s, g2, TH, 1.0)
    assert d2 is not None and d2.severity == "warning"
    # Rising and still high at the newest step: critical, from its first step.
    g3 = list(h["grad_norm"][:300])
    for i in range(280, 300):
        g3[i] = 0.8 * 1.5 ** (i - 279)
    d3 = det.exploding_gradients(s, g3, TH, 1.0)
    assert d3 is not None and d3.severity == "critical" and 283 <= d3.step <= 286
    g3[-1] = math.inf
    d4 = det.exploding_gradients(s, g3, TH, 0.0)
    assert d4.severity == "critical" and "inf" in d4.evidence
    assert d4.remedy.startswith("gradients are not clipped")


def test_loss_spike_recovered_or_not():
    h = healthy()
    s, loss = h["steps"][:400], list(h["loss"][:400])
    for i in range(300, 303):
        loss[i] *= 2.0
    d = det.loss_spike(s, loss, TH)
    assert d is not None and d.values["recovered"] is True and d.severity == "info"
    assert d.step == 301 and "recovered" in d.evidence and d.action is None
    # The same jump with the loss staying up: not recovered, critical at twice the rise.
    up = loss[:300] + [x * 2.0 for x in loss[300:]]
    d2 = det.loss_spike(s, up, TH)
    assert d2.values["recovered"] is False and d2.severity == "critical"
    assert d2.action.kind == "scale_lr"
    # NaN: critical, not recovered.
    nan = loss[:350] + [math.nan]
    d3 = det.loss_spike(s[:351], nan, TH)
    assert d3.severity == "critical" and "nan" in d3.evidence
    # Just after the jump: too early to say, a warning.
    d4 = det.loss_spike(s[:302], up[:302], TH)
    assert d4.severity == "warning" and "not recovered yet" in d4.evidence


def test_oscillation_persistent_not_one_spike():
    h = healthy()
    s, loss = h["steps"][300:500], list(h["loss"][300:500])
    swung = [x * (1.3 if i % 2 else 0.7) for i, x in enumerate(loss)]
    d = det.oscillation(s, swung, TH)
    assert d is not None and d.values["noise"] > 0.2 and d.action.label == "scale_lr 0.5"
    # One huge spike is not oscillation (the MAD ignores it).
    one = list(loss)
    one[150] *= 5
    assert det.oscillation(s, one, TH) is None
    # Swinging only in the newest quarter of the window: not (yet) persistent.
    half = loss[:175] + swung[175:]
    assert det.oscillation(s, half, TH) is None


def test_slow_convergence_judged_after_warmup_share():
    flat = [5.5 - 0.0001 * i for i in range(400)]
    steps = list(range(1, 401))
    # judge_at = 50 + 0.25 * 950 = 287.5: not before.
    assert progress.slow_convergence(flat[:5], steps[:280], flat[:280], 1000, 50, TH) is None
    d = progress.slow_convergence(flat[:5], steps, flat, 1000, 50, TH)
    assert d is not None and d.step == 287 and d.values["drop"] < 0.01
    assert d.action.label == "scale_lr 2"
    # Diverging (loss far above the start) is not slow convergence.
    assert progress.slow_convergence(flat[:5], steps, [x * 2 for x in flat], 1000, 50, TH) is None
    h = healthy()
    assert progress.slow_convergence(h["loss"][:5], h["steps"], h["loss"], 1000, 50, TH) is None


def test_late_stall_needs_high_lr_and_late():
    steps = list(range(500, 700))
    flat = [2.4 + 0.01 * math.sin(i) for i in range(200)]
    d = progress.late_stall(steps, flat, 1e-3, 1e-3, 1000, TH)
    assert d is not None and d.values["lr"] == 1e-3 and d.action.label == "scale_lr 0.5"
    assert progress.late_stall(steps, flat, 3e-4, 1e-3, 1000, TH) is None  # LR already decayed
    assert (
        progress.late_stall([s - 300 for s in steps], flat, 1e-3, 1e-3, 1000, TH) is None
    )  # early
    falling = [2.4 - 0.002 * i for i in range(200)]
    assert progress.late_stall(steps, falling, 1e-3, 1e-3, 1000, TH) is None


def test_overfitting_reports_best_step():
    vs = [100, 200, 300, 400, 500, 600]
    val = [3.0, 2.5, 2.3, 2.4, 2.5, 2.6]
    ts = list(range(1, 601))
    train = [3.0 - 0.002 * i for i in range(600)]
    d = progress.overfitting(vs, val, ts, train, TH)
    assert d is not None and d.step == 300 and d.values["best_step"] == 300
    assert d.values["evals_since_best"] == 3 and "best 2.3 at step 300" in d.evidence
    assert d.action.kind == "stop" and d.action.payload == {"restore_best": True}
    assert progress.overfitting(vs[:5], val[:5], ts, train, TH) is None  # only 2 evals since best
    rising = [2.0 + 0.002 * i for i in range(600)]
    assert progress.overfitting(vs, val, ts, rising, TH) is None  # train rising too: divergence


def test_underfitting_against_chance_level():
    steps = list(range(500, 600))
    high = [5.4] * 100
    d = progress.underfitting(steps, high, [5.41], curves.CHANCE, 1000, False, TH)
    assert d is not None and d.values["level"] > 0.95
    assert progress.underfitting(steps, [2.3] * 100, [2.4], curves.CHANCE, 1000, False, TH) is None
    assert progress.underfitting(steps, high, [], None, 1000, False, TH) is None  # chance unknown
    early = list(range(100, 200))
    assert progress.underfitting(early, high, [], curves.CHANCE, 1000, False, TH) is None
    assert (
        progress.underfitting(early, high, [], curves.CHANCE, 1000, True, TH) is not None
    )  # ended


def test_clipping_saturated_warning_or_info():
    steps = list(range(100, 200))
    d = efficiency.clipping_saturated(steps, [6.0] * 100, 1.0, 50, TH)
    assert d is not None and d.severity == "warning" and d.values["share"] == 1.0
    assert d.action.steerable is False and "max_grad_norm" in d.action.label
    assert efficiency.clipping_saturated(steps, [1.5] * 100, 1.0, 50, TH).severity == "info"
    assert efficiency.clipping_saturated(steps, [0.8] * 100, 1.0, 50, TH) is None
    assert efficiency.clipping_saturated(steps, [6.0] * 100, 0.0, 50, TH) is None  # no clipping
    assert efficiency.clipping_saturated(steps, [6.0] * 100, 1.0, 500, TH) is None  # warmup only


def test_throughput_drop_and_stalled():
    steady = [10_000.0] * 150
    steps = list(range(1, 201))
    recent = [10_000.0] * 170 + [3_000.0] * 30
    d = efficiency.throughput_drop(steady, steps, recent, "tokens_per_s", TH)
    assert d is not None and abs(d.values["ratio"] - 0.3) < 1e-9 and d.step == 181
    assert (
        efficiency.throughput_drop(steady, steps, [10_000.0] * 190 + [3_000.0] * 10, "t", TH)
        is None
    )
    s = efficiency.stalled(812, True, 700.0, 120.0)
    assert s is not None and s.severity == "critical" and s.step == 812
    assert efficiency.stalled(812, True, 200.0, 120.0).severity == "warning"
    assert efficiency.stalled(812, False, 50.0, 120.0) is None


def test_repetitive_answers_when_the_answers_start_looping():
    steps = [100, 200, 300, 400, 500, 600, 700]
    rising = [0.41, 0.2, 0.1, 0.08, 0.09, 0.45, 0.55]
    d = answers.repetitive_answers(steps, rising, TH)
    assert d is not None and d.id == "repetitive_answers" and d.severity == "warning"
    assert d.step == 600 and d.values["lowest_step"] == 400 and d.values["repetition"] == 0.55
    assert "samples/repetition 0.55 at step 700 vs 0.08 at step 400" in d.evidence
    assert "fewer epochs" in d.remedy and "template" in d.remedy
    # one eval above the limit is not yet a trend (a few prompts per eval are noisy)
    assert answers.repetitive_answers(steps[:-1], rising[:-1], TH) is None
    # the SFT demo's means (character 5-grams): a dip at 200, one high eval at 250
    demo = [0.5, 0.49, 0.44, 0.23, 0.53, 0.38]
    assert answers.repetitive_answers([50, 100, 150, 200, 250, 300], demo, TH) is None
    # an untrained model repeats from the start and then learns: no change for the worse
    falling = [0.7, 0.5, 0.35, 0.31, 0.3, 0.32, 0.33]
    assert answers.repetitive_answers(steps, falling, TH) is None
    # a rise that stays low (0.05 -> 0.25) is below the level
    assert answers.repetitive_answers(steps, [0.3, 0.1, 0.05, 0.1, 0.2, 0.22, 0.25], TH) is None
    # high but not risen enough above the lowest (0.25 -> 0.4 < 0.25 + 0.2)
    assert answers.repetitive_answers(steps, [0.5, 0.3, 0.25, 0.3, 0.3, 0.42, 0.4], TH) is None
    # recovered at the newest eval: closed
    assert answers.repetitive_answers(steps, [*rising[:-1], 0.12], TH) is None
    # three evals are not enough to know a lowest level before the newest two
    assert answers.repetitive_answers([100, 200, 300], [0.05, 0.9, 0.9], TH) is None
    assert answers.repetitive_answers(steps, [math.nan] * 4 + [0.1, 0.9, 0.9], TH) is None


def test_repetitive_answers_over_the_constructed_series():
    for kind, found in (("healthy", False), ("overfitting", False), ("repetitive_answers", True)):
        pts = curves.make(kind)["metrics"]["samples/repetition"]
        d = answers.repetitive_answers([p[0] for p in pts], [p[1] for p in pts], TH)
        assert (d is not None) == found, (kind, d)
    tight = Thresholds(repetition_level=0.9)
    pts = curves.make("repetitive_answers")["metrics"]["samples/repetition"]
    assert answers.repetitive_answers([p[0] for p in pts], [p[1] for p in pts], tight) is None
