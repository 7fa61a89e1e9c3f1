"""Provides evaluation (val_loss, perplexity or accuracy, summed over ranks) and sample generations."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tuitrain.config.schema import TrainConfig
from tuitrain.train.data import ByteTokenizer, Examples


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


@torch.no_grad()
def generate(accelerator, model, tok, cfg: TrainConfig) -> list[tuple[str, str]]:
    """(prompt, completion) for each generation prompt; rank 0 only, training RNG left untouched."""
    g = cfg.generation
    if (
        cfg.model.task != "causal-lm"
        or not g.enabled
        or not g.prompts
        or not accelerator.is_main_process
    ):
        return []
    net = accelerator.unwrap_model(model)
    was_training = net.training
    net.eval()
    conf = net.config
    max_pos = (
        getattr(conf, "n_positions", None)
        or getattr(conf, "max_position_embeddings", None)
        or 1 << 30
    )
    out = []
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # samples must not shift the training RNG stream
        torch.manual_seed(cfg.run.seed)
        for prompt in g.prompts:
            ids = (
                tok.encode(prompt)
                if isinstance(tok, ByteTokenizer)
                else tok(prompt, add_special_tokens=False)["input_ids"]
            )
            ids = ids[-(max_pos - 1) :] or [tok.bos_token_id or 0]
            new = max(1, min(g.max_new_tokens, max_pos - len(ids)))
            x = torch.tensor([ids], device=accelerator.device)
            sample = g.temperature > 0
            kw = (
                {
                    "do_sample": True,
                    "temperature": g.temperature,
                    "top_k": g.top_k or None,
                    "top_p": g.top_p,
                }
                if sample
                else {"do_sample": False}
            )
            y = net.generate(
                x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=new,
                pad_token_id=tok.pad_token_id,
                **kw,
            )
            out.append((prompt, tok.decode(y[0, len(ids) :].tolist())))
    if was_training:
        net.train()
    return out
