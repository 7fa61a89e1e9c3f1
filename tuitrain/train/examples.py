"""Provides the trainer's examples: one protocol (`Examples`: length, batch, subset, token
counts) and its two forms, equal-length tensors (text blocks, padded text, classification) and
ragged chat examples with a loss mask (padded or packed whole), built from tokenised files.

Labels are -100 on every token the loss must skip (prompts, untrained turns, padding). Packed
blocks carry position ids that restart at 0 for each example, so models whose attention reads
packed sequences from the position ids keep examples apart (`sft.check_packing` proves it on
the model before training starts).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from tuitrain.data.records import pack_plan


class Examples(Protocol):
    """What the loader, the evaluator and the batch plan need of a set of examples."""

    def __len__(self) -> int: ...

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The examples at `idx` as model inputs with labels."""
        ...

    def subset(self, idx: torch.Tensor) -> Examples:
        """The examples at `idx`, as a new set of the same kind."""
        ...

    def token_counts(self) -> tuple[int, int]:
        """(tokens inside the examples, tokens whose label is trained)."""
        ...


@dataclass
class TensorExamples:
    """Equal-length tensors (input_ids, optional attention_mask, labels)."""

    tensors: dict[str, torch.Tensor]
    packed: bool

    def __len__(self) -> int:
        return int(self.tensors["input_ids"].shape[0])

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather the examples at `idx`; padded batches are trimmed to their longest example."""
        out = {k: v[idx] for k, v in self.tensors.items()}
        if "attention_mask" in out:
            longest = int(out["attention_mask"].sum(1).max())  # CPU tensor: no device sync
            out = {k: (v[:, :longest] if v.dim() == 2 else v) for k, v in out.items()}
        return out

    def subset(self, idx: torch.Tensor) -> TensorExamples:
        """The examples at `idx`, as a new TensorExamples."""
        return TensorExamples({k: v[idx] for k, v in self.tensors.items()}, self.packed)

    def token_counts(self) -> tuple[int, int]:
        """(tokens, trained tokens); a classification label is not a token: 0."""
        ids = self.tensors["input_ids"]
        mask = self.tensors.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else ids.numel()
        labels = self.tensors["labels"]
        trained = int(labels.ne(-100).sum()) if labels.dim() == 2 else 0
        return tokens, trained


def flat_ids(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """(all tokens int64, offsets) of a tokenised dataset's input_ids, from its Arrow column."""
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    col = table.column("input_ids").combine_chunks()
    offsets = torch.from_numpy(np.asarray(col.offsets, dtype=np.int64))
    return torch.from_numpy(np.asarray(col.values).astype(np.int64)), offsets


def blocks(stream: torch.Tensor, max_len: int) -> TensorExamples:
    """A token stream cut into max_len blocks (the `group_texts` way; the rest is dropped)."""
    n = stream.numel() // max_len
    b = stream[: n * max_len].view(n, max_len).clone()
    return TensorExamples({"input_ids": b, "labels": b}, packed=True)


def padded(
    ids: torch.Tensor, offsets: torch.Tensor, max_len: int, pad_id: int, labels=None
) -> TensorExamples:
    """One example per sequence, cut at max_len and right-padded; `labels`: class ids (else the
    tokens themselves, -100 on padding)."""
    n = len(offsets) - 1
    out = torch.full((n, max_len), pad_id, dtype=torch.long)
    mask = torch.zeros((n, max_len), dtype=torch.long)
    lens = (offsets[1:] - offsets[:-1]).clamp(max=max_len)
    for i in range(n):
        a, k = int(offsets[i]), int(lens[i])
        out[i, :k] = ids[a : a + k]
        mask[i, :k] = 1
    lab = torch.tensor(labels) if labels is not None else out.masked_fill(mask == 0, -100)
    return TensorExamples({"input_ids": out, "attention_mask": mask, "labels": lab}, packed=False)


@dataclass
class RaggedExamples:
    """Variable-length tokenised examples; a unit (what a batch index picks) is one example, or a
    packed block of consecutive examples."""

    ids: torch.Tensor  # all tokens, int64
    mask: torch.Tensor  # bool per token: carries loss
    offsets: torch.Tensor  # (examples + 1) token offsets
    units: torch.Tensor  # (units, 2) example ranges [first, end)
    packed: bool
    pad_id: int
    on_prompt: bool = False  # data.train_on_prompt: the loss is on every token

    def __len__(self) -> int:
        return int(self.units.shape[0])

    def subset(self, idx: torch.Tensor) -> RaggedExamples:
        """The units at `idx`, as a new RaggedExamples (tokens are shared, not copied)."""
        return replace(self, units=self.units[idx])

    def unit(self, u: int) -> dict[str, torch.Tensor]:
        """One unit's ids, labels (-100 off the loss) and, when packed, position ids."""
        s, e = self.units[u].tolist()
        a = int(self.offsets[s])
        b = int(self.offsets[e])
        ids = self.ids[a:b]
        labels = ids.clone() if self.on_prompt else ids.masked_fill(~self.mask[a:b], -100)
        out = {"input_ids": ids, "labels": labels}
        if self.packed:
            starts = self.offsets[s:e] - a
            lens = self.offsets[s + 1 : e + 1] - self.offsets[s:e]
            out["position_ids"] = torch.arange(b - a) - torch.repeat_interleave(starts, lens)
            # No example learns its first token from the end of the one before it.
            labels[starts] = -100
        return out

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Units at `idx`, right-padded to the longest: labels -100 on padding; packed batches
        carry position_ids (padding counts as one more sequence) and no attention mask, so the
        model reads the example boundaries from the position ids."""
        rows = [self.unit(u) for u in idx.tolist()]
        longest = max(len(r["input_ids"]) for r in rows)
        n = len(rows)
        ids = torch.full((n, longest), self.pad_id, dtype=torch.long)
        labels = torch.full((n, longest), -100, dtype=torch.long)
        out = {"input_ids": ids, "labels": labels}
        if self.packed:
            pos = torch.arange(longest).repeat(n, 1)
            out["position_ids"] = pos
        else:
            att = torch.zeros((n, longest), dtype=torch.long)
            out["attention_mask"] = att
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = r["input_ids"]
            labels[i, :k] = r["labels"]
            if self.packed:
                pos[i, :k] = r["position_ids"]
                pos[i, k:] = torch.arange(longest - k)
            else:
                att[i, :k] = 1
        return out

    def token_counts(self) -> tuple[int, int]:
        """(tokens, trained tokens) over all units, as `unit` labels them (vectorised)."""
        lens = self.offsets[1:] - self.offsets[:-1]
        first, end = self.units[:, 0], self.units[:, 1]
        counts = torch.zeros(len(lens) + 1, dtype=torch.long)
        counts.index_add_(0, first, torch.ones_like(first))
        counts.index_add_(0, end, -torch.ones_like(end))
        used = counts.cumsum(0)[:-1]  # how many units hold each example
        trained = torch.ones_like(self.mask) if self.on_prompt else self.mask
        per_ex = torch.zeros(len(lens), dtype=torch.long)
        ex_of_token = torch.repeat_interleave(torch.arange(len(lens)), lens)
        per_ex.index_add_(0, ex_of_token, trained.long())
        if self.packed:  # each example's first token is never trained in a packed block
            starts = self.offsets[:-1][lens > 0]
            per_ex[lens > 0] -= trained[starts].long()
        return int((lens * used).sum()), int((per_ex * used).sum())

    def answer_tokens(self) -> int:
        """Tokens the loss is on, over all units."""
        return self.token_counts()[1]


def ragged(ds, pad_id: int, packed: bool, max_len: int, on_prompt: bool) -> RaggedExamples:
    """Chat examples straight from the Arrow columns (no per-example Python objects); records
    whose answer was cut to nothing are left out (the caller counts them as dropped)."""
    ids, offsets = flat_ids(ds)
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    mask = torch.from_numpy(
        np.asarray(table.column("mask").combine_chunks().values).astype(np.bool_)
    )
    keep = torch.from_numpy(np.asarray(table.column("answer")).astype(np.int64)) > 0
    lengths = offsets[1:] - offsets[:-1]
    if not bool(keep.all()):
        tok_keep = torch.repeat_interleave(keep, lengths)
        ids, mask, lengths = ids[tok_keep], mask[tok_keep], lengths[keep]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    if packed:
        units = torch.tensor(pack_plan(lengths.tolist(), max_len), dtype=torch.long).view(-1, 2)
    else:
        n = len(lengths)
        units = torch.stack([torch.arange(n), torch.arange(1, n + 1)], 1)
    return RaggedExamples(ids, mask, offsets, units, packed, pad_id, on_prompt)
