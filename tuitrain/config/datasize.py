"""Provides a cheap, torch-free estimate of the number of training examples a config will see."""

from __future__ import annotations

from tuitrain.config.schema import TrainConfig
from tuitrain.data.records import CHAT_FORMATS
from tuitrain.data.sources import (
    DataError,
    Record,
    data_summary,
    read_records,
    read_rows,
    split_counts,
    stdlib_bytes,
)

# Without loading a tokenizer, a subword model averages roughly 4 characters per token.
CHARS_PER_TOKEN = 4.0


def _count_examples(records: list[Record], cfg: TrainConfig) -> tuple[int, bool]:
    if cfg.model.task == "causal-lm" and cfg.data.packing:
        if cfg.model.tokenizer == "bytes":
            tokens = sum(len(r.text.encode("utf-8")) + 1 for r in records)
            return tokens // cfg.data.max_seq_length, False
        chars = sum(len(r.text) + 1 for r in records)
        return int(chars / CHARS_PER_TOKEN) // cfg.data.max_seq_length, True
    return len(records), False


def estimate_train_samples(cfg: TrainConfig) -> tuple[int | None, bool]:
    """(training examples, whether that is an estimate). Raises DataError("<field>|<message>")
    for unreadable data, so the caller can name the field."""
    d = cfg.data
    if d.source == "python-stdlib":
        size = len(stdlib_bytes(d.max_bytes))
        # A pretrained tokenizer tokenises the text (~4 characters per token); bytes are exact.
        exact = cfg.model.tokenizer == "bytes"
        n = (size if exact else int(size / CHARS_PER_TOKEN)) // d.max_seq_length
        n_train, _ = split_counts(n, d.validation_split)
        estimated = not exact
    else:
        if not d.train_file:
            return None, False
        try:
            summary = data_summary(cfg)
        except DataError as exc:
            raise DataError(f"data.train_file|{exc}") from None
        if summary is not None and summary.format in CHAT_FORMATS:
            n, estimated = summary.units, summary.estimated
        else:
            try:
                records = list(read_records(d.train_file, d.file_format, d.text_field))
            except DataError as exc:
                raise DataError(f"data.train_file|{exc}") from None
            n, estimated = _count_examples(records, cfg)
        if d.validation_file:
            try:
                next(iter(read_rows(d.validation_file, d.file_format)), None)
            except DataError as exc:
                raise DataError(f"data.validation_file|{exc}") from None
            n_train = n
        else:
            n_train = split_counts(n, d.validation_split)[0]
    if d.max_train_samples is not None:
        n_train = min(n_train, d.max_train_samples)
    return n_train, estimated
