"""Provides evaluation: val_loss, perplexity or accuracy, summed over ranks (sample generations: tuitrain.train.generate)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tuitrain.config.schema import TrainConfig
from tuitrain.train.data import Examples


@torch.no_grad()
def evaluate(accelerator, model, val: Examples, cfg: TrainConfig) -> dict[str, float]:
    """Validation metrics over this rank's share of `val` (no wrap-around), reduced over ranks."""
    net = accelerator.unwrap_model(model)  # no DDP hooks: ranks may run different batch counts
    was_training = net.training
    net.eval()
    world, rank = accelerator.num_processes, accelerator.process_index
    idx = torch.arange(len(val))[rank::world]
    bs = cfg.batch.eval_size or cfg.batch.size
    cap = cfg.training.eval_max_batches
    totals = torch.zeros(
        3, dtype=torch.float64, device=accelerator.device
    )  # loss sum, count, correct
    for i, start in enumerate(range(0, len(idx), bs)):
        if cap is not None and i >= cap:
            break
        b = {k: v.to(accelerator.device) for k, v in val.batch(idx[start : start + bs]).items()}
        labels = b.pop("labels")
        kw = {"use_cache": False} if cfg.model.task == "causal-lm" else {}
        logits = net(**b, **kw).logits.float()
        if cfg.model.task == "causal-lm":
            logits, labels = logits[:, :-1], labels[:, 1:]
            totals[0] += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            totals[1] += (labels != -100).sum()
        else:
            totals[0] += F.cross_entropy(logits, labels, reduction="sum")
            totals[1] += labels.numel()
            totals[2] += (logits.argmax(-1) == labels).sum()
    if world > 1:
        totals = accelerator.reduce(totals, "sum")
    loss_sum, count, correct = totals.tolist()  # host sync: once per evaluation
    if was_training:
        net.train()
    if count == 0:
        return {}
    val_loss = loss_sum / count
    out = {"val_loss": val_loss}
    if cfg.model.task == "causal-lm":
        out["val_perplexity"] = (
            math.exp(min(val_loss, 700.0)) if math.isfinite(val_loss) else math.inf
        )
    else:
        out["val_accuracy"] = correct / count
    return out
