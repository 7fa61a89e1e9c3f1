"""Provides the trainer's data: a byte tokenizer, tokenised splits, per-rank batch order and the
DataLoader that serves it.

Files are read through HF `datasets` (`tuitrain.train.sft` for chat / instruction records, which
are tokenised with `map(num_proc=data.num_workers)` and cached); text records become the same
examples the config's size estimate counts. A batch is a gather over tokenised tensors, run in
`data.num_workers` DataLoader workers (pinned memory on CUDA) in exactly `BatchPlan`'s order.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tuitrain.config.schema import TrainConfig
from tuitrain.data.records import CHAT_FORMATS, RecordError, detect
from tuitrain.data.sources import DataError, Record, detect_format, split_counts, stdlib_bytes

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
    """Training and validation examples, the class names for seq-cls, and for chat/instruction
    data the record format, the template, held-out prompts and notes for the run's events."""

    train: Examples
    val: Examples | None
    label_names: list[str] | None = None
    format: str = "text"
    template: str | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)  # (event kind, message)
    held_out: list[tuple[list[int], list[int]]] = field(
        default_factory=list
    )  # (prompt, answer) ids


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


class _TextTokenise:
    """`datasets.map` function for text records (picklable for worker processes)."""

    def __init__(self, tok, max_len: int | None, specials: bool):
        self.tok, self.max_len, self.specials = tok, max_len, specials

    def __call__(self, batch: dict) -> dict:
        enc = self.tok(
            batch["text"],
            add_special_tokens=self.specials,
            truncation=self.max_len is not None,
            max_length=self.max_len,
        )
        return {"input_ids": enc["input_ids"]}


def _encode(
    tok, texts: list[str], max_len: int | None, specials: bool, num_workers: int = 0
) -> list[list[int]]:
    if isinstance(tok, ByteTokenizer):
        prefix = [BYTE_BOS] if specials else []
        return [(prefix + tok.encode(t))[:max_len] for t in texts]
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict({"text": texts}).map(
        _TextTokenise(tok, max_len, specials),
        batched=True,
        batch_size=512,
        num_proc=num_workers if num_workers > 1 and len(texts) > 1 else None,
        remove_columns=["text"],
        keep_in_memory=True,
    )
    return ds["input_ids"]


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
    nw = cfg.data.num_workers
    if cfg.data.packing:
        # Each text is followed by one separator (eos), as the size estimate counts it.
        seqs = _encode(tok, [r.text for r in records], None, specials=False, num_workers=nw)
        flat: list[int] = []
        for s in seqs:
            flat.extend(s)
            if eos is not None:
                flat.append(eos)
        return _pack(torch.tensor(flat, dtype=torch.long), L)
    seqs = [
        (s + ([eos] if eos is not None else []))[:L]
        for s in _encode(tok, [r.text for r in records], L, specials=False, num_workers=nw)
    ]
    ids, mask = _pad(seqs, L, tok.pad_token_id)
    labels = ids.masked_fill(mask == 0, -100)
    return Examples({"input_ids": ids, "attention_mask": mask, "labels": labels}, packed=False)


def _seq_cls(
    records: list[Record], cfg: TrainConfig, tok, names: list[str] | None
) -> tuple[Examples, list[str]]:
    labels, names = _labels(records, cfg, names)
    seqs = _encode(
        tok,
        [r.text for r in records],
        cfg.data.max_seq_length,
        specials=True,
        num_workers=cfg.data.num_workers,
    )
    ids, mask = _pad(seqs, cfg.data.max_seq_length, tok.pad_token_id)
    return Examples(
        {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels)}, packed=False
    ), names


def _rows(path: str, cfg: TrainConfig, name: str, cache_dir: Path):
    """(HF dataset, format, how it was chosen) of a data file; errors name the config field."""
    from tuitrain.train.sft import load_rows

    try:
        raw = load_rows(path, cfg.data.file_format, cache_dir)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None
    if len(raw) == 0:
        raise DataError(f"{name}: {path} holds no examples (point it at a non-empty file)")
    if detect_format(path, cfg.data.file_format) == "txt":
        return (
            raw.rename_column("text", cfg.data.text_field)
            if cfg.data.text_field != "text"
            else raw,
            "text",
            "a .txt file",
        )
    try:
        fmt, how = detect(raw[0], cfg.data)
    except RecordError as exc:
        raise DataError(f"{name}: {path}: record 1: {exc}") from None
    return raw, fmt, how


def _records(raw, path: str, cfg: TrainConfig, name: str) -> list[Record]:
    """Text (and label) records of a loaded file, all missing fields reported at once."""
    d = cfg.data
    label = d.label_field if cfg.model.task == "seq-cls" else None
    cols = raw.column_names
    if d.text_field not in cols:
        raise DataError(
            f"{name}: {path}: no field {d.text_field!r} in {cols[:8]} (set data.text_field to the key holding the text)"
        )
    texts = raw[d.text_field]
    labels = raw[label] if label and label in cols else [None] * len(texts)
    bad = [i + 1 for i, t in enumerate(texts) if t is None]
    if bad:
        listed = ", ".join(map(str, bad[:50]))
        raise DataError(
            f"{name}: {path}: {len(bad)} records have no {d.text_field!r} (records {listed}); fix them or set data.text_field"
        )
    return [Record(str(t), lab) for t, lab in zip(texts, labels, strict=True)]


def _split(ex: Examples, cfg: TrainConfig) -> tuple[Examples, Examples | None]:
    """Seeded shuffle, then the validation part from the end (as `split_counts` promises)."""
    n_train, n_val = split_counts(len(ex), cfg.data.validation_split)
    perm = torch.randperm(len(ex), generator=torch.Generator().manual_seed(cfg.run.seed))
    val = ex.subset(perm[n_train:]) if n_val else None
    return ex.subset(perm[:n_train]), val


def _stdlib(cfg: TrainConfig, tok) -> Examples:
    """The stdlib corpus packed into blocks: raw bytes for the byte tokenizer, else tokenised
    by the model's tokenizer (in line chunks, in parallel), each chunk followed by eos."""
    d = cfg.data
    raw = stdlib_bytes(d.max_bytes)
    if isinstance(tok, ByteTokenizer):
        stream = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
        return _pack(stream, d.max_seq_length)
    lines = raw.decode("utf-8", errors="replace").splitlines(keepends=True)
    chunks = ["".join(lines[i : i + 200]) for i in range(0, len(lines), 200)]
    flat: list[int] = []
    for s in _encode(tok, chunks, None, specials=False, num_workers=d.num_workers):
        flat.extend(s)
    if tok.eos_token_id is not None:
        flat.append(tok.eos_token_id)
    return _pack(torch.tensor(flat, dtype=torch.long), d.max_seq_length)


def _sft_file(cfg, tok, path, raw, fmt, how, name, cache_dir, notes):
    from tuitrain.train.sft import build_file

    try:
        f = build_file(cfg, tok, path, raw, fmt, how, cache_dir)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None
    notes.append(
        ("data", f"{name}: {fmt} records ({how}), template {f.template}, {f.records} records")
    )
    notes.append(
        (
            "data",
            f"{name}: tokenised data "
            + ("reused from the cache" if f.cached else f"tokenised ({_workers(cfg)}) and cached")
            + f" ({cache_dir / 'sft' / f.key})",
        )
    )
    if f.truncated or f.dropped:
        share = f.truncated / f.records
        msg = f"{name}: {share:.0%} of examples truncated ({f.truncated} of {f.records} longer than data.max_seq_length={cfg.data.max_seq_length})"
        if f.dropped:
            msg += f"; {f.dropped} dropped: their prompt fills max_seq_length, no answer token left (raise data.max_seq_length)"
        notes.append(("warning", msg))
    return f


def _workers(cfg: TrainConfig) -> str:
    nw = cfg.data.num_workers
    return f"{nw} worker processes" if nw > 1 else "in this process"


def build_splits(cfg: TrainConfig, tok, cache_dir: str | Path | None = None) -> Splits:
    """Tokenised train/validation examples for the config (train capped by max_train_samples).
    `cache_dir` keeps tokenised chat/instruction files (keyed by file, tokenizer, settings);
    with several ranks, rank 0 tokenises first and the others read its cache."""
    import torch.distributed as dist

    multi = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if multi and dist.get_rank() != 0:
        dist.barrier()
    try:
        return _build_splits(cfg, tok, cache_dir)
    finally:
        if multi and dist.get_rank() == 0:
            dist.barrier()


def _build_splits(cfg: TrainConfig, tok, cache_dir: str | Path | None) -> Splits:
    d = cfg.data
    cache = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "tuitrain-data-cache"
    names = None
    fmt, template, notes, held_out = "text", None, [], []
    if d.source == "python-stdlib":
        train, val = _split(_stdlib(cfg, tok), cfg)
    else:
        raw, fmt, how = _rows(d.train_file, cfg, "data.train_file", cache)
        if fmt in CHAT_FORMATS:
            if cfg.model.task != "causal-lm":
                raise DataError(
                    f"data.format: {fmt} records train a causal LM (set model.task: causal-lm, or data.format: text for classification)"
                )
            f = _sft_file(cfg, tok, d.train_file, raw, fmt, how, "data.train_file", cache, notes)
            template, ex = f.template, f.examples
            if d.validation_file:
                vraw, vfmt, vhow = _rows(d.validation_file, cfg, "data.validation_file", cache)
                if vfmt != fmt:
                    raise DataError(
                        f"data.validation_file: {vfmt} records, but data.train_file holds {fmt} (use the same format)"
                    )
                vf = _sft_file(
                    cfg,
                    tok,
                    d.validation_file,
                    vraw,
                    vfmt,
                    vhow,
                    "data.validation_file",
                    cache,
                    notes,
                )
                train, val = ex, vf.examples
            else:
                train, val = _split(ex, cfg)
        else:
            records = _records(raw, d.train_file, cfg, "data.train_file")
            if cfg.model.task == "seq-cls":
                ex, names = _seq_cls(records, cfg, tok, None)
            else:
                ex = _causal(records, cfg, tok)
            if d.validation_file:
                vraw, _, _ = _rows(d.validation_file, cfg, "data.validation_file", cache)
                vrec = _records(vraw, d.validation_file, cfg, "data.validation_file")
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
    if fmt in CHAT_FORMATS:
        from tuitrain.train.sft import held_out_prompts

        held_out = held_out_prompts(val, cfg.generation.val_prompts)
    return Splits(train, val, names, fmt, template, notes, held_out)


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


class _Gather(torch.utils.data.Dataset):
    """Map-style view whose item is a whole batch: `examples.batch(index tensor)`."""

    def __init__(self, examples):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.examples.batch(idx)


class _PlanSampler(torch.utils.data.Sampler):
    """Yields `BatchPlan.batches(epoch, skip)` for the epoch last set; iterated in the main
    process, so workers only gather and the order is the plan's exactly."""

    def __init__(self, plan: BatchPlan):
        self.plan, self.epoch, self.skip = plan, 0, 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.plan.batches(self.epoch, self.skip)

    def __len__(self) -> int:
        return max(0, self.plan.num_batches - self.skip)


class EpochLoader:
    """Batches of an epoch in BatchPlan order: in this process (num_workers 0) or from a
    persistent DataLoader with `num_workers` workers (pinned memory on CUDA)."""

    def __init__(self, examples, plan: BatchPlan, num_workers: int = 0, pin_memory: bool = False):
        self.examples, self.plan, self.num_workers = examples, plan, num_workers
        self.sampler = _PlanSampler(plan)
        self.loader = None
        if num_workers > 0:
            self.loader = torch.utils.data.DataLoader(
                _Gather(examples),
                sampler=self.sampler,
                batch_size=None,  # the sampler already yields whole batches
                num_workers=num_workers,
                pin_memory=pin_memory,
                persistent_workers=True,  # workers survive epochs; the sampler moves on
                prefetch_factor=4,
            )

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of `epoch` after the first `skip` (already trained before a resume)."""
        if self.loader is None:
            return (self.examples.batch(idx) for idx in self.plan.batches(epoch, skip))
        self.sampler.epoch, self.sampler.skip = epoch, skip
        return iter(self.loader)
