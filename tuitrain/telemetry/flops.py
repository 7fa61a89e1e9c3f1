"""Provides FlopsModel: what MFU needs about a run's model (matmul weights, attention shape, the
device's peak at the precision it computes in). Reads a torch model: imported by the trainer
only (tuitrain.telemetry.perf holds the torch-free formulas and peak table)."""

from __future__ import annotations

import torch

from tuitrain.telemetry import perf


def matmul_params(model) -> tuple[int, int]:
    """(all, trainable) weights that multiply activations: every parameter but the embedding
    lookups (an input embedding tied to the output head counts once, as the head); 4-bit
    weights count their unpacked size."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_w = getattr(head, "weight", None)
    lookups = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and m.weight is not head_w
    }
    n = trainable = 0
    for prm in model.parameters():
        if id(prm) in lookups:
            continue
        # bitsandbytes packs two 4-bit weights per uint8 element.
        k = prm.numel() * (2 if prm.dtype == torch.uint8 and hasattr(prm, "quant_state") else 1)
        n += k
        trainable += k if prm.requires_grad else 0
    return n, trainable


def mfu_precision(mixed: str, model) -> str:
    """The matmul precision the peak is read at: the autocast dtype, else the weights' dtype
    (fp32 runs on TF32 tensor cores only where PyTorch was told to allow it)."""
    if mixed in ("bf16", "fp16"):
        return mixed
    dtypes = [prm.dtype for prm in model.parameters() if prm.is_floating_point()]
    main = max(set(dtypes), key=dtypes.count) if dtypes else torch.float32
    if main in (torch.bfloat16, torch.float16):
        return "bf16" if main == torch.bfloat16 else "fp16"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


class FlopsModel:
    """What MFU needs about this run: FLOPs per token at a sequence length and the peak."""

    def __init__(self, model, mixed: str, device, world: int):
        inner = getattr(model, "module", model)  # DDP wraps the model
        n, trainable = matmul_params(inner)
        c = getattr(inner, "config", None)
        self.layers = int(getattr(c, "num_hidden_layers", 0) or 0)
        self.heads = int(getattr(c, "num_attention_heads", 0) or 0)
        hidden = int(getattr(c, "hidden_size", 0) or 0)
        self.head_dim = int(
            getattr(c, "head_dim", 0) or (hidden // self.heads if self.heads else 0)
        )
        self.n, self.trainable, self.world = n, trainable, world
        self.precision = mfu_precision(mixed, inner)
        self.device = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        self.peak = perf.peak_flops(self.device, self.precision) if device.type == "cuda" else None
        self.note = (
            None if self.peak is not None else perf.unknown_peak_note(self.device, self.precision)
        )

    def per_token(self, seq_len: float) -> float:
        """Training FLOPs per token at this (token-weighted mean) sequence length."""
        return perf.flops_per_token(
            self.n, self.layers, self.heads, self.head_dim, seq_len, self.trainable
        )

    def mfu(self, tokens_per_s: float, seq_len: float) -> float | None:
        """MFU of all ranks together, None where the peak is unknown."""
        if self.peak is None:
            return None
        return perf.mfu(tokens_per_s, self.per_token(seq_len), self.peak, self.world)

    def as_dict(self, seq_len: int) -> dict:
        """The run summary's `perf` entry."""
        return {
            "device": self.device,
            "precision": self.precision,
            "matmul_params": self.n,
            "flops_per_token": self.per_token(seq_len),
            "seq_len": seq_len,
            "peak_flops": self.peak,
        }
