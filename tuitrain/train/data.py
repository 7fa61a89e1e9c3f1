"""Provides the trainer's data: tokenised train/validation splits with the run's data summary,
per-rank batch order and the DataLoader that serves it.

Files are tokenised (and cached) by `tuitrain.train.loading`; here they become examples:
chat / instruction records ragged with a loss mask (padded or packed whole), text records for a
causal LM cut into max_seq_length blocks (data.text_mode: blocks) or one truncated example each
(per_record), classification records padded with their class. Every record and token is
counted on the way (`DataReport`), so nothing is dropped or cut without the run saying so.
A batch is a gather over tokenised tensors, run in `data.num_workers` DataLoader workers
(pinned memory on CUDA) in exactly `BatchPlan`'s order.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tuitrain.config.schema import TrainConfig
from tuitrain.data.estimate import DROPPED_PROMPT, zero_examples
from tuitrain.data.records import CHAT_FORMATS, text_blocks
from tuitrain.data.sources import DataError, split_counts, stdlib_bytes, stdlib_files
from tuitrain.data.summary import DataReport, summary_line
from tuitrain.train.examples import (
    Examples,
    RaggedExamples,
    TensorExamples,
    blocks,
    flat_ids,
    padded,
    ragged,
)
from tuitrain.train.loading import Loaded, load_file
from tuitrain.train.tokenizer import BYTE_VOCAB, ByteTokenizer, encoder

__all__ = ["BYTE_VOCAB", "ByteTokenizer", "Examples", "RaggedExamples", "TensorExamples"]


@dataclass
class Splits:
    """Training and validation examples, the class names for seq-cls, the record format and
    template, the data summary, held-out prompts and notes for the run's events."""

    train: Examples
    val: Examples | None
    label_names: list[str] | None = None
    format: str = "text"
    template: str | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)  # (event kind, message)
    held_out: list[tuple[list[int], list[int]]] = field(
        default_factory=list
    )  # (prompt, answer) ids
    summary: dict = field(default_factory=dict)  # the `data` object (DataReport.as_dict())

    def summary_event(self) -> tuple[str, int, dict]:
        """(message, step, data) of the run's data event: the summary line and its counts."""
        return summary_line(self.summary), 0, self.summary


def _labels(
    keys: list[str], cfg: TrainConfig, names: list[str] | None
) -> tuple[list[int], list[str]]:
    """Class ids for the records: integer labels as they are, string labels by sorted name."""
    field, n = cfg.data.label_field, cfg.model.num_labels
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
            f"{field!r} values {unknown[:5]} do not occur in the training data (fix the validation file, or add them to training)",
            "data.validation_file",
        )
    return [index[k] for k in keys], names


def _lengths(f: Loaded) -> np.ndarray:
    return np.asarray(f.ds.data.table.column("length"), dtype=np.int64)


def _examples(
    cfg: TrainConfig, tok, f: Loaded, names: list[str] | None
) -> tuple[Examples, DataReport, list[str] | None]:
    """The examples of one tokenised file and its counts."""
    d, L = cfg.data, cfg.data.max_seq_length
    rep = DataReport(f.fmt, f.template, f.how, records=f.records)
    rep.tokenize_s, rep.cache_hit = f.tokenize_s, f.cached
    lengths = _lengths(f)
    rep.tokens_total = int(lengths.sum())
    if f.fmt in CHAT_FORMATS:
        answers = np.asarray(f.ds.data.table.column("answer"), dtype=np.int64)
        rep.truncated = int((lengths > L).sum())
        rep.drop(DROPPED_PROMPT, int((answers == 0).sum()))
        ex: Examples = ragged(f.ds, tok.pad_token_id or 0, d.packing, L, d.train_on_prompt)
    elif cfg.model.task == "seq-cls":
        ids, offsets = flat_ids(f.ds)
        labels, names = _labels(f.ds["label"], cfg, names)
        rep.truncated = int((lengths > L).sum())
        ex = padded(ids, offsets, L, tok.pad_token_id, labels)
    elif text_blocks(d, cfg.model.task):
        ids, _ = flat_ids(f.ds)
        ex = blocks(ids, L)
    else:
        ids, offsets = flat_ids(f.ds)
        rep.truncated = int((lengths > L).sum())
        ex = padded(ids, offsets, L, tok.pad_token_id)
    rep.examples = len(ex)
    rep.tokens_in_examples, loss = ex.token_counts()
    rep.loss_tokens = None if cfg.model.task == "seq-cls" else loss
    return ex, rep, names


def _split(ex: Examples, cfg: TrainConfig) -> tuple[Examples, Examples | None]:
    """Seeded shuffle, then the validation part from the end (as `split_counts` promises)."""
    n_train, n_val = split_counts(len(ex), cfg.data.validation_split)
    perm = torch.randperm(len(ex), generator=torch.Generator().manual_seed(cfg.run.seed))
    val = ex.subset(perm[n_train:]) if n_val else None
    return ex.subset(perm[:n_train]), val


def _stdlib(cfg: TrainConfig, tok) -> tuple[Examples, DataReport]:
    """The stdlib corpus packed into blocks: raw bytes for the byte tokenizer, else tokenised
    by the model's tokenizer (in line chunks), each chunk followed by eos."""
    d = cfg.data
    raw = stdlib_bytes(d.max_bytes)
    rep = DataReport("text", how="python-stdlib", records=len(stdlib_files(d.max_bytes)))
    if isinstance(tok, ByteTokenizer):
        stream = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
    else:
        lines = raw.decode("utf-8", errors="replace").splitlines(keepends=True)
        chunks = ["".join(lines[i : i + 200]) for i in range(0, len(lines), 200)]
        flat: list[int] = []
        for s in encoder(tok)(chunks):
            flat.extend(s)
        if tok.eos_token_id is not None:
            flat.append(tok.eos_token_id)
        stream = torch.tensor(flat, dtype=torch.long)
    ex = blocks(stream, d.max_seq_length)
    rep.tokens_total = stream.numel()
    rep.examples = len(ex)
    rep.tokens_in_examples, rep.loss_tokens = ex.token_counts()
    return ex, rep


def _notes(cfg: TrainConfig, f: Loaded, rep: DataReport, name: str) -> list[tuple[str, str]]:
    nw = cfg.data.num_workers
    how = f"{nw} worker processes" if nw > 1 else "in this process"
    notes: list[tuple[str, str]] = [
        (
            "data",
            f"{name}: {f.fmt} records ({f.how})"
            + (f", template {f.template}" if f.template else "")
            + f", {f.records} records",
        ),
        (
            "data",
            f"{name}: tokenised data "
            + ("reused from the cache" if f.cached else f"tokenised ({how}) and cached")
            + f" ({f.path})",
        ),
    ]
    L = cfg.data.max_seq_length
    if rep.truncated or rep.dropped:
        msg = f"{name}: {rep.truncated / max(1, rep.records):.0%} of examples truncated ({rep.truncated} of {rep.records} longer than data.max_seq_length={L})"
        if rep.dropped:
            msg += f"; {rep.dropped} dropped: their prompt fills max_seq_length, no answer token left (raise data.max_seq_length)"
        notes.append(("warning", msg))
    return notes


def build_splits(cfg: TrainConfig, tok, cache_dir: str | Path | None = None) -> Splits:
    """Tokenised train/validation examples for the config (train capped by max_train_samples).
    `cache_dir` keeps tokenised files (keyed by file, tokenizer, settings); with several
    ranks, rank 0 tokenises first and the others read its cache."""
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
    notes: list[tuple[str, str]] = []
    held_out: list = []
    if d.source == "python-stdlib":
        ex, rep = _stdlib(cfg, tok)
        train, val = _split(ex, cfg)
    else:
        f = load_file(cfg, tok, d.train_file, "data.train_file", cache)
        ex, rep, names = _examples(cfg, tok, f, None)
        notes += _notes(cfg, f, rep, "data.train_file")
        if d.validation_file:
            vf = load_file(cfg, tok, d.validation_file, "data.validation_file", cache)
            if vf.fmt != f.fmt:
                raise DataError(
                    f"data.validation_file: {vf.fmt} records, but data.train_file holds {f.fmt} (use the same format)",
                    "data.validation_file",
                )
            val, vrep, _ = _examples(cfg, tok, vf, names)
            notes += _notes(cfg, vf, vrep, "data.validation_file")
            train = ex
            rep.add(vrep)
        else:
            train, val = _split(ex, cfg)
    if len(train) == 0:
        raise zero_examples(cfg, rep)
    if d.max_train_samples is not None and len(train) > d.max_train_samples:
        train = train.subset(torch.arange(d.max_train_samples))
    if val is not None and len(val) == 0:
        val = None
    rep.train_examples, rep.val_examples = len(train), len(val) if val is not None else 0
    if rep.format in CHAT_FORMATS:
        from tuitrain.train.sft import held_out_prompts

        held_out = held_out_prompts(val, cfg.generation.val_prompts)
    return Splits(train, val, names, rep.format, rep.template, notes, held_out, rep.as_dict())


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
