"""Provides sample generation: the prompts answered at each evaluation (generation.prompts, then
held-out validation prompts with their reference answers), each answer as a structured sample
(tuitrain.store Sample fields), and one answer to one prompt, shared with `tuitrain ask`
(tuitrain.train.ask). Greedy unless generation.temperature > 0, so steps and runs compare."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from tuitrain.config.schema import TrainConfig
from tuitrain.data.records import CHAT_FORMATS
from tuitrain.train.tokenizer import ByteTokenizer, encoder


@dataclass
class GenPrompt:
    """One prompt to answer: a stable id (p0.. config prompts, v0.. held-out validation prompts),
    where it comes from, the text shown, its token ids, the chat messages (chat runs) and the
    reference answer (held-out prompts)."""

    prompt_id: str
    source: str  # prompt | val | ask
    prompt: str
    ids: list[int]
    messages: list[dict[str, str]] | None = None
    reference: str | None = None


def settings(g, max_new_tokens: int, seed: int) -> dict[str, Any]:
    """The decoding settings a sample records: greedy, or sampling with its temperature, top_k
    (None: off), top_p and seed."""
    if g.temperature <= 0:
        return {"mode": "greedy", "max_new_tokens": max_new_tokens}
    return {
        "mode": "sample",
        "temperature": g.temperature,
        "top_k": g.top_k or None,
        "top_p": g.top_p,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
    }


def cut(text: str, stop: str | None, tok) -> str:
    """The answer up to where the turn ends (the template's end marker, or eos written as text)."""
    for end in (stop, getattr(tok, "eos_token", None)):
        if isinstance(end, str) and end and end in text:
            text = text[: text.index(end)]
    return text


def max_positions(net) -> int:
    """The model's context length (huge when its config does not say)."""
    conf = net.config
    return (
        getattr(conf, "n_positions", None)
        or getattr(conf, "max_position_embeddings", None)
        or 1 << 30
    )


@torch.no_grad()
def answer(
    net, tok, ids: list[int], g, max_new_tokens: int, device, stop: str | None, seed: int
) -> dict:
    """One answer of `net` (in eval mode) to prompt `ids`: {output, tokens (new tokens
    generated), seconds, settings}. The prompt keeps its last tokens when it is longer than the
    context; the answer is cut where the turn ends. `seed`: what the caller seeded torch with
    (recorded when sampling)."""
    max_pos = max_positions(net)
    ids = ids[-(max_pos - 1) :] or [tok.bos_token_id or 0]
    new = max(1, min(max_new_tokens, max_pos - len(ids)))
    x = torch.tensor([ids], device=device)
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
    t0 = time.perf_counter()
    y = net.generate(
        x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=new,
        pad_token_id=tok.pad_token_id,
        **kw,
    )
    out = y[0, len(ids) :].tolist()  # host sync: the tokens are needed as text
    seconds = time.perf_counter() - t0
    return {
        "output": cut(tok.decode(out), stop, tok),
        "tokens": len(out),
        "seconds": seconds,
        "settings": settings(g, new, seed),
    }


def eval_prompts(cfg: TrainConfig, tok, splits=None) -> tuple[list[GenPrompt], str | None]:
    """(the prompts answered at each evaluation, the answer end marker). Chat/instruction runs
    render generation.prompts with the chat template (a string is one user message) and add the
    held-out validation prompts with their reference answers; plain text runs complete the
    string prompts as they are."""
    g = cfg.generation
    if splits is None or splits.format not in CHAT_FORMATS:
        return [
            GenPrompt(f"p{i}", "prompt", p, text_ids(tok, p))
            for i, p in enumerate(g.prompts)
            if isinstance(p, str)
        ], None
    from tuitrain.train.sft import answer_end, chat_render, last_user_turn

    render, _ = chat_render(cfg, tok)
    stop = answer_end(cfg, tok) or None
    enc = encoder(tok)
    out: list[GenPrompt] = []
    for i, p in enumerate(g.prompts):
        msgs = (
            [{"role": "user", "content": p}]
            if isinstance(p, str)
            else [{"role": m.role, "content": m.content} for m in p]
        )
        shown = (
            msgs[-1]["content"] if isinstance(p, str) else " | ".join(m["content"] for m in msgs)
        )
        out.append(GenPrompt(f"p{i}", "prompt", shown, enc([render(msgs, True)])[0], msgs))
    for i, (ids, ans) in enumerate(splits.held_out):
        shown = last_user_turn(tok.decode(ids), render)
        ref = cut(tok.decode(ans), stop, tok).strip()
        out.append(GenPrompt(f"v{i}", "val", shown, ids, None, ref))
    return out, stop


def text_ids(tok, prompt: str) -> list[int]:
    """Token ids of a plain prompt (no special tokens added)."""
    if isinstance(tok, ByteTokenizer):
        return tok.encode(prompt)
    return tok(prompt, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def generate(accelerator, model, tok, cfg: TrainConfig, splits=None) -> list[dict]:
    """The samples of one evaluation: one dict per prompt with the Sample fields (prompt_id,
    source, prompt, messages, reference, output, tokens, seconds, settings); rank 0 only,
    causal-lm only, the training RNG left untouched."""
    g = cfg.generation
    if cfg.model.task != "causal-lm" or not g.enabled or not accelerator.is_main_process:
        return []
    prompts, stop = eval_prompts(cfg, tok, splits)
    if not prompts:
        return []
    net = accelerator.unwrap_model(model)
    was_training = net.training
    net.eval()
    out = []
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # samples must not shift the training RNG stream
        seed = cfg.run.seed  # reseeded at each evaluation: the same draws at every step
        torch.manual_seed(seed)
        for p in prompts:
            a = answer(net, tok, p.ids, g, g.max_new_tokens, accelerator.device, stop, seed)
            out.append(
                {
                    "prompt_id": p.prompt_id,
                    "source": p.source,
                    "prompt": p.prompt,
                    "messages": p.messages,
                    "reference": p.reference,
                    **a,
                }
            )
    if was_training:
        net.train()
    return out
