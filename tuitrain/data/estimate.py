"""Provides the data estimate that the editor and `tuitrain validate` show: format, template,
examples, truncation, drops and the loss share, computed torch-free from the files through the
same reader and record conversion the trainer uses; and `with_data`, which adds the example
count to a resolved config (the config layer itself reads no data file).

Token counts are exact with the byte tokenizer; for a pretrained tokenizer (not loaded here)
they are approximated at ~4 characters per token and marked as estimates.
"""

from __future__ import annotations

from pathlib import Path

from tuitrain.data.records import (
    CHAT_FORMATS,
    RecordError,
    detect,
    pack_plan,
    text_blocks,
    text_of,
    to_conversation,
    tokenise,
)
from tuitrain.data.sources import (
    DataError,
    detect_format,
    file_identity,
    read_rows,
    split_counts,
    stdlib_bytes,
)
from tuitrain.data.summary import DataReport
from tuitrain.data.templates import TemplateError, lookup

# Without the tokenizer at hand, a subword model averages roughly 4 characters per token.
CHARS_PER_TOKEN = 4.0
# The estimate tokenises at most this many chat records and extrapolates (marked as estimated).
SAMPLE = 5000
# Malformed records listed in one error (the count of the rest follows).
MAX_LISTED = 50
DROPPED_PROMPT = "the prompt fills max_seq_length, no answer token left"


def record_problems(path: str, problems: list[str], total: int, field: str) -> DataError:
    """One DataError listing malformed records (file, record number, field) all at once."""
    shown = "\n".join(f"  {path}: {p}" for p in problems[:MAX_LISTED])
    more = total - min(total, MAX_LISTED)
    tail = f"\n  ... and {more} more" if more else ""
    return DataError(
        f"{total} malformed record{'s' if total != 1 else ''} in {path} (fix them, or set data.format and the data.*_field names):\n{shown}{tail}",
        field,
    )


def template_problem(path: str, first: str, total: int) -> DataError:
    """The chat template failed on records: the first with its number and the template's message."""
    more = f" (and {total - 1} more records)" if total > 1 else ""
    return DataError(
        f"the template failed on {path} {first}{more}; fix the template, or use a built-in such as chatml",
        "data.chat_template",
    )


def _encoder(exact: bool):
    def encode(texts: list[str]) -> list[list[int]]:
        if exact:
            return [list(t.encode("utf-8")) for t in texts]
        return [[0] * max(1, round(len(t) / CHARS_PER_TOKEN)) if t else [] for t in texts]

    return encode


def _text_file(cfg, rows, fmt: str, field: str, path: str) -> DataReport:
    d, task = cfg.data, cfg.model.task
    exact = cfg.model.tokenizer == "bytes"
    L = d.max_seq_length
    rep = DataReport(fmt, estimated=not exact)
    problems: list[str] = []
    n_bad = 0
    for n, row in enumerate(rows, 1):
        rep.records += 1
        try:
            text = text_of(row, d)
        except RecordError as exc:
            n_bad += 1
            if len(problems) < MAX_LISTED:
                problems.append(f"record {n}: {exc}")
            continue
        size = (
            len(text.encode("utf-8")) + 1 if exact else max(1, round(len(text) / CHARS_PER_TOKEN))
        )
        rep.tokens_total += size
        if not text_blocks(d, task):
            rep.examples += 1
            rep.truncated += size > L
            rep.tokens_in_examples += min(size, L)
    if n_bad:
        raise record_problems(path, problems, n_bad, field)
    if text_blocks(d, task):
        rep.examples = rep.tokens_total // L
        rep.tokens_in_examples = rep.examples * L
    rep.loss_tokens = None if task == "seq-cls" else rep.tokens_in_examples
    return rep


def _chat_file(cfg, rows, fmt: str, field: str, path: str) -> tuple[DataReport, list[int]]:
    d = cfg.data
    exact = cfg.model.tokenizer == "bytes"
    L = d.max_seq_length
    try:
        tmpl = lookup(cfg)
    except TemplateError as exc:
        raise DataError(str(exc), "data.chat_template") from None
    encode = _encoder(exact)
    rep = DataReport(fmt, tmpl.label, estimated=not exact)
    problems: list[str] = []
    n_bad = n_tmpl = 0
    first_tmpl = ""
    lengths: list[int] = []
    for n, row in enumerate(rows, 1):
        rep.records += 1
        try:
            conv = to_conversation(row, fmt, d)
        except RecordError as exc:
            n_bad += 1
            if len(problems) < MAX_LISTED:
                problems.append(f"record {n}: {exc}")
            continue
        if n > SAMPLE:
            continue  # counted, checked; not tokenised
        try:
            t = tokenise(conv, tmpl.renderer(conv.tools), encode, L)
        except TemplateError as exc:
            n_tmpl += 1
            first_tmpl = first_tmpl or f"record {n}: {exc}"
            continue
        rep.tokens_total += t.length
        rep.truncated += t.length > L
        if t.answer_tokens == 0:
            rep.drop(DROPPED_PROMPT)
            continue
        lengths.append(len(t.ids))
        rep.tokens_in_examples += len(t.ids)
        rep.loss_tokens += len(t.ids) if d.train_on_prompt else t.answer_tokens
    if n_bad:
        raise record_problems(path, problems, n_bad, field)
    if n_tmpl:
        raise template_problem(path, first_tmpl, n_tmpl)
    rep.examples = len(pack_plan(lengths, L)) if d.packing else len(lengths)
    sampled = min(rep.records, SAMPLE)
    if rep.records > sampled:
        scale = rep.records / sampled
        for k in ("examples", "truncated", "tokens_total", "tokens_in_examples", "loss_tokens"):
            setattr(rep, k, round(getattr(rep, k) * scale))
        rep.drop_reasons = {r: round(v * scale) for r, v in rep.drop_reasons.items()}
        rep.dropped = sum(rep.drop_reasons.values())
        rep.estimated = True
    return rep, lengths


def file_summary(cfg, path: str, field: str = "data.train_file") -> DataReport:
    """The estimate of one data file; DataErrors name `field`."""
    d = cfg.data
    rows = read_rows(path, d.file_format)
    try:
        first = next(rows, None)
    except DataError as exc:
        raise replace_field(exc, field) from None
    if first is None:
        raise DataError(f"{path} holds no records (point it at a non-empty file)", field)
    txt = detect_format(path, d.file_format) == "txt"
    try:
        fmt, how = ("text", "a .txt file") if txt else detect(first, d)
    except RecordError as exc:
        raise DataError(f"{path}: record 1: {exc}", field) from None
    if txt and d.text_field != "text":
        d = d.model_copy(update={"text_field": "text"})
        cfg = cfg.model_copy(update={"data": d})

    def all_rows():
        yield first
        yield from rows

    try:
        if fmt in CHAT_FORMATS:
            if cfg.model.task != "causal-lm":
                raise DataError(
                    f"{fmt} records train a causal LM (set model.task: causal-lm, or data.format: text for classification)",
                    "data.format",
                )
            rep, _ = _chat_file(cfg, all_rows(), fmt, field, path)
        else:
            rep = _text_file(cfg, all_rows(), fmt, field, path)
    except DataError as exc:
        raise replace_field(exc, exc.field if exc.field != "data.train_file" else field) from None
    rep.how = how
    return rep


def replace_field(exc: DataError, field: str) -> DataError:
    """The same error under another config field."""
    return DataError(str(exc), field)


def _key(cfg, path: str) -> tuple:
    m = cfg.model
    return (file_identity(path), m.tokenizer, m.name_or_path, m.task, repr(cfg.data.model_dump()))


# Estimates by (file identity, settings): the editor's worker computes one, its panel reads it.
_CACHE: dict[tuple, DataReport] = {}


def data_summary(cfg, cached_only: bool = False) -> DataReport | None:
    """The estimate for the config's data (train file, plus a validation file); None for the
    stdlib corpus or without a file. `cached_only`: never read a file (for the UI thread)."""
    d = cfg.data
    if d.source != "file" or not d.train_file:
        return None
    if not Path(d.train_file).exists():
        if cached_only:
            return None
        raise DataError(f"{d.train_file}: no such file (set data.train_file to an existing file)")
    try:
        key = _key(cfg, d.train_file) + (
            file_identity(d.validation_file)
            if d.validation_file and Path(d.validation_file).exists()
            else None,
        )
    except OSError:
        return None
    if cached_only or key in _CACHE:
        return _CACHE.get(key)
    rep = file_summary(cfg, d.train_file)
    train_units = rep.examples
    if d.validation_file:
        val = file_summary(cfg, d.validation_file, "data.validation_file")
        rep.train_examples, rep.val_examples = train_units, val.examples
        rep.add(val)
    else:
        rep.train_examples, rep.val_examples = split_counts(train_units, d.validation_split)
    if rep.train_examples == 0:
        raise zero_examples(cfg, rep)
    if len(_CACHE) >= 8:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = rep
    return rep


def zero_examples(cfg, rep: DataReport) -> DataError:
    """No training example: the advice that fits the cause."""
    d = cfg.data
    L = d.max_seq_length
    if rep.format in CHAT_FORMATS:
        return DataError(
            f"no training examples: in all {rep.records} records the prompt fills max_seq_length={L}, "
            "so no answer token is left (raise data.max_seq_length, or trim the prompts)",
            "data.max_seq_length",
        )
    if text_blocks(d, cfg.model.task):
        return DataError(
            f"no training examples: the text holds {'~' if rep.estimated else ''}{rep.tokens_total} tokens, "
            f"less than one block of max_seq_length={L} (lower data.max_seq_length, or add data)",
            "data.max_seq_length",
        )
    return DataError(
        f"no training examples from {rep.records} records (add records, or lower data.validation_split)",
        "data.train_file",
    )


def estimate_train_samples(cfg) -> tuple[int | None, bool]:
    """(training examples, whether that is an estimate); DataError (with its field) for data
    that cannot be used."""
    d = cfg.data
    if d.source == "python-stdlib":
        exact = cfg.model.tokenizer == "bytes"
        size = len(stdlib_bytes(d.max_bytes))
        n = (size if exact else int(size / CHARS_PER_TOKEN)) // d.max_seq_length
        n_train, estimated = split_counts(n, d.validation_split)[0], not exact
    else:
        rep = data_summary(cfg)
        if rep is None:
            return None, False
        n_train, estimated = rep.train_examples, rep.estimated
    if d.max_train_samples is not None:
        n_train = min(n_train, d.max_train_samples)
    return n_train, estimated


FIXES = {
    "data.train_file": "fix the file or the records listed, or set data.format / data.file_format and the data.*_field names",
    "data.validation_file": "fix the file or the records listed (same format as data.train_file)",
    "data.chat_template": "fix the template, or set data.chat_template to a built-in such as chatml",
    "data.max_seq_length": "change data.max_seq_length (or the data) as the message says",
    "data.format": "set data.format or model.task as the message says",
}


def with_data(resolved):
    """`resolved` with the training example count from the data estimate (steps per epoch,
    total steps, warmup); data that cannot be used is a ConfigError under its field."""
    from tuitrain.config import ConfigError, ConfigIssue, resolve

    cfg = resolved.config
    try:
        samples = estimate_train_samples(cfg)
    except DataError as exc:
        line = (resolved.lines or {}).get(exc.field, (None, None))[1]
        issue = ConfigIssue(exc.field, str(exc), FIXES.get(exc.field, ""), resolved.source, line)
        raise ConfigError([issue]) from None
    return resolve(cfg, resolved.source, resolved.lines, samples=samples)


def load_with_data(path, env: str | None = None, sets=()):
    """load_config, then `with_data`: what `validate` and `run` check before training."""
    from tuitrain.config import load_config

    return with_data(load_config(path, env=env, sets=sets))
