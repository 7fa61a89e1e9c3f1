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
def generate(accelerator, model, tok, cfg: TrainConfig, splits=None) -> list[tuple[str, str]]:
    """(prompt, completion) for each generation prompt; rank 0 only, training RNG left untouched.
    Chat/instruction runs render the prompts with the chat template, add held-out validation
    prompts, and cut each answer where the template ends a turn."""
    from tuitrain.data.records import CHAT_FORMATS

    g = cfg.generation
    chat = splits is not None and splits.format in CHAT_FORMATS
    if cfg.model.task != "causal-lm" or not g.enabled or not accelerator.is_main_process:
        return []
    stop = None
    if chat:
        from tuitrain.train.sft import answer_end, sample_prompts

        prompts = sample_prompts(cfg, tok, splits)
        stop = answer_end(cfg, tok) or None
    else:
        prompts = [(p, _ids(tok, p)) for p in g.prompts if isinstance(p, str)]
    if not prompts:
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
        for prompt, ids in prompts:
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
            text = tok.decode(y[0, len(ids) :].tolist())
            # Cut where the turn ends (the template's marker, or eos written as text).
            for end in (stop, getattr(tok, "eos_token", None)):
                if isinstance(end, str) and end and end in text:
                    text = text[: text.index(end)]
            out.append((prompt, text))
    if was_training:
        net.train()
    return out


def _ids(tok, prompt: str) -> list[int]:
    if isinstance(tok, ByteTokenizer):
        return tok.encode(prompt)
    return tok(prompt, add_special_tokens=False)["input_ids"]
