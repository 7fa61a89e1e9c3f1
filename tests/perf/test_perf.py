"""Tests tuitrain.telemetry.perf: the FLOPs formula, the peak table lookup by real device names, MFU."""

from __future__ import annotations

import pytest

from tuitrain.telemetry import perf


def test_flops_per_token_is_palm_6n_plus_attention_by_hand():
    # A 2-layer, 4-head, head dim 8 model of 10,000 matmul weights at T = 16:
    # 6 * 10_000 + 12 * 2 * 4 * 8 * 16 = 60_000 + 12_288.
    assert perf.flops_per_token(10_000, 2, 4, 8, 16) == 72_288
    # Frozen weights: forward and activation backward (4N) still run, weight grads only for 1,000.
    assert perf.flops_per_token(10_000, 2, 4, 8, 16, trainable=1_000) == 40_000 + 2_000 + 12_288
    with pytest.raises(ValueError, match="seq_len"):
        perf.flops_per_token(10, 1, 1, 1, -1)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA GH200 480GB", "H100 SXM"),
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA A100-PCIE-40GB", "A100"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 3090", "RTX 3090"),
        ("Tesla V100-SXM2-16GB", "V100 SXM2"),
        ("Tesla V100-SXM2-32GB", "V100 SXM2"),
        ("Tesla V100-PCIE-32GB", "V100 PCIe"),
        ("Tesla V100S-PCIE-32GB", "V100S"),
    ],
)
def test_device_names_find_their_row(name, key):
    assert perf.gpu_key(name) == key


@pytest.mark.parametrize(
    "name",
    [
        "cpu",
        "NVIDIA A10G",
        "NVIDIA GeForce RTX 4090 D",
        "NVIDIA GeForce RTX 3090 Ti",
        "NVIDIA H800",
        "mps",
        "",
    ],
)
def test_unknown_devices_have_no_peak(name):
    assert perf.gpu_key(name) is None
    assert perf.peak_flops(name, "bf16") is None
    assert perf.unknown_peak_note(name, "bf16") == f"MFU: unknown peak for {name}"


def test_peaks_by_precision():
    assert perf.peak_flops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert perf.peak_flops("NVIDIA H100 80GB HBM3", "tf32") == pytest.approx(494.7e12)
    assert perf.peak_flops("NVIDIA A100-SXM4-80GB", "fp32") == pytest.approx(19.5e12)
    assert perf.peak_flops("NVIDIA L4", "fp16") == pytest.approx(121e12)
    assert perf.peak_flops("Tesla V100-SXM2-16GB", "bf16") is None  # no bf16 tensor cores
    assert perf.unknown_peak_note("Tesla V100-SXM2-16GB", "bf16").startswith("MFU: no bf16 peak")
    with pytest.raises(ValueError, match="precision"):
        perf.peak_flops("NVIDIA L4", "fp8")
    for row in perf.PEAKS.values():  # the tensor rates never fall below the plain fp32 rate
        assert set(row) == set(perf.PRECISIONS)
        assert all(v is None or v >= row["fp32"] for v in row.values())


def test_mfu_is_achieved_over_peak_of_all_devices():
    # 1e4 tokens/s x 6e9 FLOPs/token = 6e13 FLOP/s on 2 devices of 1e14 peak: 30 %.
    assert perf.mfu(1e4, 6e9, 1e14, devices=2) == pytest.approx(0.3)
