"""Tests of the range test's curve math on constructed curves (no training)."""

from __future__ import annotations

import math
import random

import pytest

from tuitrain.lrfind.curve import PRETRAINED_WARNING, Smoother, ramp_lr, smooth, suggest


def lrs(n: int = 100, lo: float = 1e-7, hi: float = 1.0) -> list[float]:
    return [ramp_lr(i, lo, hi, n) for i in range(n)]


def valley(lr: float, centre: float = 1e-3, blow: float = 0.1) -> float:
    """A classic range-test curve: flat, a sigmoid descent around `centre`, a blow-up past `blow`."""
    z = math.log10(lr) - math.log10(centre)
    loss = 1.0 + 4.0 / (1.0 + math.exp(3.0 * z))
    if lr > blow:
        loss += 40.0 * (math.log10(lr) - math.log10(blow))
    return loss


def test_ramp_ends_and_is_exponential():
    xs = lrs(11, 1e-6, 1e-1)
    assert xs[0] == pytest.approx(1e-6) and xs[-1] == pytest.approx(1e-1)
    ratios = [b / a for a, b in zip(xs, xs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))
    assert ramp_lr(50, 1e-6, 1e-1, 11) == pytest.approx(1e-1)  # held at the top past the end


def test_smoother_is_debiased_and_stops_at_4x():
    s = Smoother()
    assert s.add(1e-5, 2.0) == pytest.approx(2.0)  # debiased: the first value is itself
    for _ in range(20):
        s.add(1e-5, 1.0)
    assert s.stop_reason is None
    while s.stop_reason is None:
        s.add(1e-1, 100.0)
    assert "4x its minimum" in s.stop_reason
    s2 = Smoother()
    s2.add(1e-5, 1.0)
    s2.add(1e-4, float("nan"))
    assert "nan" in s2.stop_reason


def test_valley_curve_suggests_the_steep_part():
    pts = [(lr, valley(lr)) for lr in lrs()]
    sug = suggest(pts)
    assert sug.clear, sug.warnings
    assert sug.method == "steepest"
    # The smoothed curve lags the raw one, so the steepest point sits at or just past the centre.
    assert 1e-4 < sug.suggested_lr < 1e-2
    assert sug.min10_lr == pytest.approx(sug.min_loss_lr / 10)
    assert 1e-3 < sug.min_loss_lr <= 0.2
    js = sug.as_json()
    assert set(js) >= {"suggested_lr", "method", "min_loss_lr", "points"}
    assert len(js["points"]) == 100


def test_noise_on_a_clear_curve_still_suggests_near_the_centre():
    rng = random.Random(0)
    pts = [(lr, valley(lr) + rng.gauss(0, 0.05)) for lr in lrs()]
    sug = suggest(pts)
    assert sug.clear, sug.warnings
    assert 1e-4 < sug.suggested_lr < 1e-2


def test_flat_curve_says_so():
    rng = random.Random(1)
    pts = [(lr, 2.0 + rng.gauss(0, 0.01)) for lr in lrs()]
    sug = suggest(pts)
    assert not sug.clear
    assert any(w.startswith("flat") for w in sug.warnings)


def test_diverging_from_the_first_step_says_so():
    pts = [(lr, 1.0 + 30 * i / 100) for i, lr in enumerate(lrs())]
    sug = suggest(pts)
    assert not sug.clear
    assert any("diverging from the first step" in w or "no descent" in w for w in sug.warnings)


def test_noisy_curve_says_so():
    rng = random.Random(2)
    pts = [(lr, valley(lr, blow=10) * 0.1 + 1.0 + rng.gauss(0, 1.0)) for lr in lrs()]
    sug = suggest(pts)
    assert not sug.clear
    assert any(w.startswith(("noisy", "flat")) for w in sug.warnings)


def test_too_few_points_gives_no_suggestion():
    sug = suggest([(1e-5, 1.0), (1e-4, 0.9), (1e-3, float("nan"))])
    assert sug.suggested_lr is None and sug.method == "none" and not sug.clear
    assert "finite points" in sug.warnings[0]


def test_non_finite_tail_is_ignored():
    pts = [(lr, valley(lr)) for lr in lrs()][:80] + [(1.0, float("inf"))]
    sug = suggest(pts)
    assert sug.suggested_lr is not None and math.isfinite(sug.suggested_lr)


def test_pretrained_is_never_clear():
    pts = [(lr, valley(lr)) for lr in lrs()]
    sug = suggest(pts, pretrained=True)
    assert not sug.clear and PRETRAINED_WARNING in sug.warnings
    assert sug.suggested_lr is not None


def test_smooth_matches_smoother():
    vals = [3.0, 2.0, 1.0, 4.0]
    s = Smoother()
    assert smooth(vals) == [s.add(0.0, v) for v in vals]
