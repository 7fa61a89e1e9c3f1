"""Provides model FLOPs per token and a peak-FLOPs table of NVIDIA GPUs, for tokens/s and MFU.

Torch-free: the trainer passes plain numbers; `tuitrain show` and the monitor can import it.

FLOPs per token (PaLM, Chowdhery et al. 2022, appendix B): a training step of a dense
transformer costs 6N + 12*L*H*Q*T FLOPs per token, N the parameters that multiply activations
(embedding lookups are no matmul: an untied input embedding and position tables are left out; a
tied one counts once, as the output head), L layers, H heads, Q head dim, T sequence length.
6N = 2N forward + 2N backward through the activations + 2N for the weight gradients. With LoRA
(or any frozen weights) the forward and the activation backward still run through every weight,
but only the trainable ones get weight gradients: 4N + 2*N_trainable. Recomputation (gradient
checkpointing) is not counted: MFU counts model FLOPs, not hardware FLOPs. Tokens are the
non-padding tokens the trainer counts, so padding lowers MFU (it is wasted work).
"""

from __future__ import annotations

import re

# Peak dense (no 2:4 sparsity) tensor FLOP/s per GPU, from NVIDIA's datasheets; fp32 is the
# non-tensor-core rate. None: the precision has no fast path there (V100: no bf16, no tf32).
# bf16/fp16 are with fp32 accumulation (what PyTorch uses), which halves GeForce cards' rates.
_T = 1e12
PEAKS: dict[str, dict[str, float | None]] = {
    "H100 SXM": {"bf16": 989.4 * _T, "fp16": 989.4 * _T, "tf32": 494.7 * _T, "fp32": 66.9 * _T},
    "H100 PCIe": {"bf16": 756.0 * _T, "fp16": 756.0 * _T, "tf32": 378.0 * _T, "fp32": 51.2 * _T},
    "H100 NVL": {"bf16": 835.5 * _T, "fp16": 835.5 * _T, "tf32": 417.5 * _T, "fp32": 60.0 * _T},
    "H200": {"bf16": 989.4 * _T, "fp16": 989.4 * _T, "tf32": 494.7 * _T, "fp32": 66.9 * _T},
    "H200 NVL": {"bf16": 835.5 * _T, "fp16": 835.5 * _T, "tf32": 417.5 * _T, "fp32": 60.0 * _T},
    "A100": {"bf16": 312.0 * _T, "fp16": 312.0 * _T, "tf32": 156.0 * _T, "fp32": 19.5 * _T},
    "L40S": {"bf16": 362.05 * _T, "fp16": 362.05 * _T, "tf32": 183.0 * _T, "fp32": 91.6 * _T},
    "L40": {"bf16": 181.0 * _T, "fp16": 181.0 * _T, "tf32": 90.5 * _T, "fp32": 90.5 * _T},
    "L4": {"bf16": 121.0 * _T, "fp16": 121.0 * _T, "tf32": 60.0 * _T, "fp32": 30.3 * _T},
    "A10": {"bf16": 125.0 * _T, "fp16": 125.0 * _T, "tf32": 62.5 * _T, "fp32": 31.2 * _T},
    "RTX 4090": {"bf16": 165.2 * _T, "fp16": 165.2 * _T, "tf32": 82.6 * _T, "fp32": 82.6 * _T},
    "RTX 3090": {"bf16": 71.0 * _T, "fp16": 71.0 * _T, "tf32": 35.6 * _T, "fp32": 35.6 * _T},
    "V100 SXM2": {"bf16": None, "fp16": 125.0 * _T, "tf32": None, "fp32": 15.7 * _T},
    "V100 PCIe": {"bf16": None, "fp16": 112.0 * _T, "tf32": None, "fp32": 14.0 * _T},
    "V100S": {"bf16": None, "fp16": 130.0 * _T, "tf32": None, "fp32": 16.4 * _T},
}
PRECISIONS = ("bf16", "fp16", "tf32", "fp32")

# torch.cuda.get_device_name() strings -> table rows; first match wins, so the specific forms
# (PCIe, NVL, L40S before L40 before L4) come first. Unlisted variants (A10G, RTX 4090 D, laptop
# parts, H800) have other clocks or SM counts: they stay unknown rather than get a wrong peak.
_NAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.IGNORECASE), key)
    for p, key in (
        (r"\bH100\b.*\bPCIE\b", "H100 PCIe"),
        (r"\bH100\b.*\bNVL\b", "H100 NVL"),
        (r"\bGH200\b", "H100 SXM"),  # Grace Hopper: the H100 SXM tensor cores
        (r"\bH100\b(?!.*\b(?:NVL|PCIE)\b)", "H100 SXM"),  # "NVIDIA H100 80GB HBM3", "H100 SXM5"
        (r"\bH200\b.*\bNVL\b", "H200 NVL"),
        (r"\bH200\b", "H200"),
        (r"\bA100\b", "A100"),  # SXM4 and PCIe, 40 and 80 GB: the same tensor peak
        (r"\bL40S\b", "L40S"),
        (r"\bL40\b", "L40"),
        (r"\bL4\b", "L4"),
        (r"\bA10\b", "A10"),
        (r"\bRTX 4090\b(?!\s*(?:D\b|LAPTOP))", "RTX 4090"),
        (r"\bRTX 3090\b(?!\s*(?:TI\b|LAPTOP))", "RTX 3090"),
        (r"\bV100S\b", "V100S"),
        (r"\bV100\b.*\bPCIE\b", "V100 PCIe"),
        (r"\bV100\b", "V100 SXM2"),
    )
]


def gpu_key(device_name: str) -> str | None:
    """The PEAKS row of a device name as torch.cuda.get_device_name() gives it, or None."""
    for pattern, key in _NAMES:
        if pattern.search(device_name):
            return key
    return None


def peak_flops(device_name: str, precision: str) -> float | None:
    """Peak dense FLOP/s of one device at `precision` (bf16 | fp16 | tf32 | fp32); None: unknown."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    key = gpu_key(device_name)
    return None if key is None else PEAKS[key][precision]


def flops_per_token(
    params: int,
    layers: int,
    heads: int,
    head_dim: int,
    seq_len: float,
    trainable: int | None = None,
) -> float:
    """Training FLOPs per token: 4N + 2*N_trainable + 12*L*H*Q*T (6N + 12LHQT when all train).

    `params` counts the weights that multiply activations (frozen and trainable), `trainable`
    the ones that get gradients (default: all)."""
    if min(params, layers, heads, head_dim) < 0 or seq_len < 0:
        raise ValueError("params, layers, heads, head_dim and seq_len must be >= 0")
    n_train = params if trainable is None else min(trainable, params)
    return 4.0 * params + 2.0 * n_train + 12.0 * layers * heads * head_dim * seq_len


def mfu(tokens_per_s: float, per_token: float, peak: float, devices: int = 1) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak of all `devices`."""
    return tokens_per_s * per_token / (peak * max(1, devices))


def unknown_peak_note(device_name: str, precision: str) -> str:
    """Why MFU is omitted, in the words the run's summary and `show` use."""
    if gpu_key(device_name) is not None:
        return f"MFU: no {precision} peak for {device_name}"
    return f"MFU: unknown peak for {device_name}"
