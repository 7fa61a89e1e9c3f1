"""Provides what chat / instruction training needs beyond its examples: the packing guarantee
(checked on the model before training), the held-out validation prompts, and the rendering and
answer end the samples at each evaluation use (tuitrain.train.generate), all from the one template lookup
(`tuitrain.data.templates.lookup`) that tokenising used."""

from __future__ import annotations

import torch

from tuitrain.data.sources import DataError
from tuitrain.data.templates import TemplateError, end_marker, lookup
from tuitrain.train.examples import RaggedExamples


def chat_render(cfg, tok=None):
    """(render(messages, add_generation_prompt) -> str, label) for the run's chat template."""
    del tok  # the template comes from the config and the tokenizer's files, as for tokenising
    try:
        tmpl = lookup(cfg)
    except TemplateError as exc:
        raise DataError(str(exc), "data.chat_template") from None
    return tmpl.renderer(), tmpl.label


def held_out_prompts(val: RaggedExamples | None, n: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, expected answer ids) of the first answer turn of the first `n` validation
    examples: the rendered prompt ends with the template's generation prompt."""
    out: list[tuple[list[int], list[int]]] = []
    if val is None:
        return out
    for u in range(min(n, len(val))):
        s = int(val.units[u, 0])
        a, b = int(val.offsets[s]), int(val.offsets[s + 1])
        ids, mask = val.ids[a:b], val.mask[a:b]
        hits = mask.nonzero()
        if not len(hits):
            continue
        first = int(hits[0])
        rest = mask[first:]
        end = first + (int((~rest).nonzero()[0]) if bool((~rest).any()) else len(rest))
        out.append((ids[:first].tolist(), ids[first:end].tolist()))
    return out


# ---- packing guarantee -----------------------------------------------------------------------
@torch.no_grad()
def packing_isolated(model) -> bool:
    """Whether the model keeps packed examples apart: example B's logits inside a packed block
    (position ids restarting at 0) equal B's logits alone."""
    net = model
    was_training = net.training
    net.eval()
    try:
        p = next(net.parameters())
        vocab = int(getattr(net.config, "vocab_size", 2) or 2)
        g = torch.Generator().manual_seed(0)
        a = torch.randint(0, vocab, (5,), generator=g).to(p.device)
        b = torch.randint(0, vocab, (4,), generator=g).to(p.device)
        x = torch.cat([a, b])[None]
        pos = torch.cat([torch.arange(5), torch.arange(4)])[None].to(p.device)
        packed = net(input_ids=x, position_ids=pos, use_cache=False).logits[0, 5:].float()
        alone = net(input_ids=b[None], use_cache=False).logits[0].float()
        joined = net(input_ids=x, use_cache=False).logits[0, 5:].float()
    finally:
        if was_training:
            net.train()
    err = (packed - alone).abs().max().item()
    cross = (joined - alone).abs().max().item()
    tol = 1e-4 if p.dtype == torch.float32 else 3e-2
    return err <= tol * max(1.0, alone.abs().max().item()) and err < 0.1 * max(cross, 1e-12)


def check_packing(cfg, model, splits) -> str | None:
    """Before training: a packed chat/instruction run on a model that cannot keep examples apart
    fails unless data.allow_cross_attention; returns a note for the run's events (or None)."""
    from tuitrain.train.model import SetupError

    if not isinstance(splits.train, RaggedExamples) or not splits.train.packed:
        return None
    if packing_isolated(model):
        return (
            "packing: examples kept apart (position ids restart per example; checked on this model)"
        )
    if not cfg.data.allow_cross_attention:
        raise SetupError(
            "data.packing: this model does not keep packed examples apart (its attention ignores "
            "per-example position ids), so packed examples would attend to each other; set "
            "data.packing: false, or data.allow_cross_attention: true to pack anyway"
        )
    return "packing WITHOUT isolation: packed examples can attend to earlier ones in their block (data.allow_cross_attention)"


def answer_end(cfg, tok) -> str:
    """The text a template writes after an answer (generation samples are cut there)."""
    render, _ = chat_render(cfg, tok)
    return end_marker(render)


def last_user_turn(prompt: str, render) -> str:
    """A readable form of a rendered prompt: the text between the template's markers."""
    probe = "\x00q\x00"
    shape = render([{"role": "user", "content": probe}], True)
    head, _, tail = shape.partition(probe)
    text = prompt
    if head and head.strip() in text:
        text = text.rsplit(head.strip(), 1)[-1]
    if tail and tail.strip() and tail.strip() in text:
        text = text.split(tail.strip(), 1)[0]
    return text.strip()
