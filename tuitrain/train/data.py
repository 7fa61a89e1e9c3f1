"""Provides the trainer's data: a byte tokenizer, tokenised in-memory splits and per-rank batch order.

The examples come from `tuitrain.datasets` (the same readers the config's size estimate uses), so
the number of training examples here equals the editor's estimate for byte and packed data.
Examples are tokenised once into tensors; a batch is a tensor gather, so no DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from tuitrain.config.schema import TrainConfig
from tuitrain.datasets import DataError, Record, read_records, split_counts, stdlib_bytes

# Byte tokenizer: ids 0-255 are the raw UTF-8 bytes; three specials follow (vocab 259).
BYTE_PAD, BYTE_BOS, BYTE_EOS = 256, 257, 258
BYTE_VOCAB = 259


class ByteTokenizer:
    """UTF-8 bytes as token ids, plus pad/bos/eos; enough of the HF tokenizer API for training."""

    vocab_size = BYTE_VOCAB
    pad_token_id = BYTE_PAD
    bos_token_id = BYTE_BOS
    eos_token_id = BYTE_EOS

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (its UTF-8 bytes, no specials)."""
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, dropping specials; broken UTF-8 sequences become U+FFFD."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def save_pretrained(self, path: str | Path) -> None:
        """Write a small descriptor so an exported model says how it was tokenised."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "tuitrain_tokenizer.txt").write_text(
            "bytes: ids 0-255 = UTF-8 bytes, 256 pad, 257 bos, 258 eos\n"
        )


@dataclass
class Examples:
    """Tokenised examples as equal-length tensors (input_ids, optional attention_mask, labels)."""

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

    def subset(self, idx: torch.Tensor) -> Examples:
        """The examples at `idx`, as a new Examples."""
        return Examples({k: v[idx] for k, v in self.tensors.items()}, self.packed)


@dataclass
class Splits:
    """Training and validation examples, and the class names for seq-cls."""

    train: Examples
    val: Examples | None
    label_names: list[str] | None = None


def _labels(
    records: list[Record], cfg: TrainConfig, names: list[str] | None
) -> tuple[list[int], list[str]]:
    """Class ids for the records: integer labels as they are, string labels by sorted name."""
    field, n = cfg.data.label_field, cfg.model.num_labels
    keys = [str(r.label).strip() if r.label is not None else "" for r in records]
    for i, k in enumerate(keys):
        if not k:
            raise DataError(
                f"example {i + 1} has no {field!r} (set data.label_field to the column holding the class)"
            )
    if names is None:
        distinct = set(keys)
        if all(k.isdigit() for k in distinct):
            names = [str(i) for i in range(max(int(k) for k in distinct) + 1)]
        else:
            names = sorted(distinct)
        if len(names) > n:
            raise DataError(
                f"{field!r} has {len(names)} classes but model.num_labels is {n} (set model.num_labels: {len(names)})"
            )
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(keys) - set(index))
    if unknown:
        raise DataError(
            f"{field!r} values {unknown[:5]} do not occur in the training data (fix the validation file, or add them to training)"
        )
    return [index[k] for k in keys], names


def _encode(tok, texts: list[str], max_len: int, specials: bool) -> list[list[int]]:
    if isinstance(tok, ByteTokenizer):
        prefix = [BYTE_BOS] if specials else []
        return [(prefix + tok.encode(t))[:max_len] for t in texts]
    enc = tok(
        texts, add_special_tokens=specials, truncation=max_len is not None, max_length=max_len
    )
    return enc["input_ids"]


def _pad(seqs: list[list[int]], max_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(seqs), max_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), max_len), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _pack(stream: torch.Tensor, max_len: int) -> Examples:
    n = stream.numel() // max_len
    blocks = stream[: n * max_len].view(n, max_len).clone()
    return Examples({"input_ids": blocks, "labels": blocks}, packed=True)


def _causal(records: list[Record], cfg: TrainConfig, tok) -> Examples:
    L = cfg.data.max_seq_length
    eos = tok.eos_token_id
    if cfg.data.packing:
        # Each text is followed by one separator (eos), as the size estimate counts it.
        seqs = _encode(tok, [r.text for r in records], None, specials=False)
        flat: list[int] = []
        for s in seqs:
            flat.extend(s)
            if eos is not None:
                flat.append(eos)
        return _pack(torch.tensor(flat, dtype=torch.long), L)
    seqs = [
        (s + ([eos] if eos is not None else []))[:L]
        for s in _encode(tok, [r.text for r in records], L, specials=False)
    ]
    ids, mask = _pad(seqs, L, tok.pad_token_id)
    labels = ids.masked_fill(mask == 0, -100)
    return Examples({"input_ids": ids, "attention_mask": mask, "labels": labels}, packed=False)


def _seq_cls(
    records: list[Record], cfg: TrainConfig, tok, names: list[str] | None
) -> tuple[Examples, list[str]]:
    labels, names = _labels(records, cfg, names)
    seqs = _encode(tok, [r.text for r in records], cfg.data.max_seq_length, specials=True)
    ids, mask = _pad(seqs, cfg.data.max_seq_length, tok.pad_token_id)
    return Examples(
        {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels)}, packed=False
    ), names


def _read(path: str, cfg: TrainConfig, field: str) -> list[Record]:
    d = cfg.data
    label = d.label_field if cfg.model.task == "seq-cls" else None
    try:
        records = list(read_records(path, d.format, d.text_field, label))
    except DataError as exc:
        raise DataError(f"{field}: {exc}") from None
    if not records:
        raise DataError(f"{field}: {path} holds no examples (point it at a non-empty file)")
    return records


def _split(ex: Examples, cfg: TrainConfig) -> tuple[Examples, Examples | None]:
    """Seeded shuffle, then the validation part from the end (as `split_counts` promises)."""
    n_train, n_val = split_counts(len(ex), cfg.data.validation_split)
    perm = torch.randperm(len(ex), generator=torch.Generator().manual_seed(cfg.run.seed))
    val = ex.subset(perm[n_train:]) if n_val else None
    return ex.subset(perm[:n_train]), val


def build_splits(cfg: TrainConfig, tok) -> Splits:
    """Tokenised train/validation examples for the config (train capped by max_train_samples)."""
    d = cfg.data
    names = None
    if d.source == "python-stdlib":
        raw = stdlib_bytes(d.max_bytes)
        stream = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
        train, val = _split(_pack(stream, d.max_seq_length), cfg)
    else:
        records = _read(d.train_file, cfg, "data.train_file")
        if cfg.model.task == "seq-cls":
            ex, names = _seq_cls(records, cfg, tok, None)
        else:
            ex = _causal(records, cfg, tok)
        if d.validation_file:
            vrec = _read(d.validation_file, cfg, "data.validation_file")
            train = ex
            val = (
                _seq_cls(vrec, cfg, tok, names)[0]
                if cfg.model.task == "seq-cls"
                else _causal(vrec, cfg, tok)
            )
        else:
            train, val = _split(ex, cfg)
    if len(train) == 0:
        raise DataError(
            f"no training examples of {d.max_seq_length} tokens (lower data.max_seq_length or add data)"
        )
    if d.max_train_samples is not None and len(train) > d.max_train_samples:
        train = train.subset(torch.arange(d.max_train_samples))
    if val is not None and len(val) == 0:
        val = None
    return Splits(train, val, names)


class BatchPlan:
    """This rank's batches of an epoch: a seeded permutation per epoch, padded by wrapping
    around so every rank sees ceil(N/world) examples (the count `derived.steps_per_epoch` uses)."""

    def __init__(
        self, n: int, micro_batch: int, rank: int, world: int, seed: int, shuffle: bool = True
    ):
        self.n, self.micro, self.rank, self.world, self.seed, self.shuffle = (
            n,
            micro_batch,
            rank,
            world,
            seed,
            shuffle,
        )
        self.per_rank = math.ceil(n / world)
        self.num_batches = math.ceil(self.per_rank / micro_batch)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's example indices for `epoch`."""
        if self.shuffle:
            order = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + epoch)
            )
        else:
            order = torch.arange(self.n)
        total = self.per_rank * self.world
        if total > self.n:
            order = torch.cat([order, order[: total - self.n]])
        return order[self.rank : total : self.world]

    def batches(self, epoch: int, skip: int = 0) -> Iterator[torch.Tensor]:
        """Index batches of `epoch`, skipping the first `skip` (already trained before a resume)."""
        idx = self.indices(epoch)
        for b in range(skip, self.num_batches):
            yield idx[b * self.micro : (b + 1) * self.micro]
