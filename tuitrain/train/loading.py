"""Provides the trainer's loading of a data file: the records (read by `tuitrain.data.sources`,
the one reader) handed to HF `datasets`, tokenised with `map(num_proc=data.num_workers)`
through the same record conversion and template rendering the editor's estimate uses, and
cached on disk by file + tokenizer + settings (a second run of the same data reads the cache).

Every format is tokenised here: chat / instruction records into ids with a loss mask, text
records into their full ids (blocks and truncation are cut later, so both are counted), and
classification records into ids with the tokenizer's specials and their raw label.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tuitrain.data.estimate import MAX_LISTED, record_problems, template_problem
from tuitrain.data.records import (
    CHAT_FORMATS,
    RecordError,
    detect,
    text_of,
    to_conversation,
    tokenise,
)
from tuitrain.data.sources import DataError, detect_format, file_identity, read_rows
from tuitrain.data.templates import TemplateError, lookup
from tuitrain.train.tokenizer import encoder, tokenizer_id, with_specials

CACHE_VERSION = 2  # bump when the tokenised layout changes
# Settings that change what a record becomes (part of the cache key).
TOKEN_SETTINGS = (
    "format",
    "file_format",
    "text_field",
    "label_field",
    "prompt_field",
    "completion_field",
    "instruction_field",
    "input_field",
    "output_field",
    "messages_field",
    "role_map",
    "tools_field",
    "chat_template",
    "max_seq_length",
)


@dataclass
class Loaded:
    """One tokenised file and how it got here (for the data summary and the run's events)."""

    ds: object  # datasets.Dataset: input_ids, mask (chat), length, answer (chat), label (seq-cls)
    fmt: str
    how: str
    template: str | None
    records: int
    cached: bool
    tokenize_s: float
    path: Path  # the cache folder


def file_format(cfg, path: str, field: str) -> tuple[str, str]:
    """(record format, how it was chosen) from the file's first record."""
    d = cfg.data
    if detect_format(path, d.file_format) == "txt":
        return "text", "a .txt file"
    try:
        first = next(iter(read_rows(path, d.file_format)), None)
    except DataError as exc:
        raise DataError(str(exc), field) from None
    if first is None:
        raise DataError(f"{path} holds no records (point it at a non-empty file)", field)
    try:
        return detect(first, d)
    except RecordError as exc:
        raise DataError(f"{path}: record 1: {exc}", field) from None


def _records(path: str, kind: str, ident: str):
    """The records as JSON text (one column), so records of any shape fit one Arrow schema."""
    del ident  # in the arguments so datasets' own fingerprint changes with the file
    for row in read_rows(path, kind):
        yield {"record": json.dumps(row, ensure_ascii=False, default=str)}


def raw_dataset(path: str, kind: str, cache_dir: Path):
    """The file's records as an HF Dataset (column `record`: each record as JSON)."""
    import datasets

    datasets.disable_progress_bars()  # bars would flood train.log
    try:
        return datasets.Dataset.from_generator(
            _records,
            gen_kwargs={"path": str(path), "kind": kind, "ident": repr(file_identity(path))},
            cache_dir=str(cache_dir / "hf"),
        )
    except Exception as exc:  # datasets wraps what the reader raised
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, DataError):
            raise DataError(str(cause)) from None
        raise


class _Tokenise:
    """The `datasets.map` function (batched, with indices); picklable for worker processes,
    the renderer and encoder are rebuilt in each worker."""

    def __init__(self, cfg, tok, fmt: str, txt: bool):
        self.cfg, self.tok, self.fmt, self.txt = cfg, tok, fmt, txt
        self._fns = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fns": None}

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        if self._fns is None:
            tmpl = lookup(self.cfg) if self.fmt in CHAT_FORMATS else None
            self._fns = (tmpl, encoder(self.tok))
        tmpl, encode = self._fns
        d = self.cfg.data
        rows = [json.loads(r) for r in batch["record"]]
        if self.fmt in CHAT_FORMATS:
            return self._chat(rows, indices, tmpl, encode)
        out: dict[str, list] = {"input_ids": [], "length": [], "error": []}
        seq_cls = self.cfg.model.task == "seq-cls"
        if seq_cls:
            out["label"] = []
        texts = []
        for row, n in zip(rows, indices, strict=True):
            try:
                texts.append(row["text"] if self.txt else text_of(row, d))
                out["error"].append("")
            except RecordError as exc:
                texts.append("")
                out["error"].append(f"record {n + 1}: {exc}")
            if seq_cls:
                v = row.get(d.label_field)
                out["label"].append("" if v is None else str(v).strip())
        eos = self.tok.eos_token_id
        for ids in encode(texts):
            if seq_cls:
                out["length"].append(len(ids) + self.tok.num_special_tokens_to_add())
                ids = with_specials(self.tok, ids, d.max_seq_length)
            else:
                ids = ids + ([eos] if eos is not None else [])  # each text ends with eos
                out["length"].append(len(ids))
            out["input_ids"].append(ids)
        return out

    def _chat(self, rows, indices, tmpl, encode) -> dict:
        d = self.cfg.data
        out: dict[str, list] = {k: [] for k in ("input_ids", "mask", "length", "answer", "error")}
        out["template_error"] = []
        for row, n in zip(rows, indices, strict=True):
            t, err, terr = None, "", ""
            try:
                conv = to_conversation(row, self.fmt, d)
                t = tokenise(conv, tmpl.renderer(conv.tools), encode, d.max_seq_length)
            except RecordError as exc:
                err = f"record {n + 1}: {exc}"
            except TemplateError as exc:
                terr = f"record {n + 1}: {exc}"
            out["input_ids"].append(t.ids if t else [])
            out["mask"].append(t.mask if t else [])
            out["length"].append(t.length if t else 0)
            out["answer"].append(t.answer_tokens if t else 0)
            out["error"].append(err)
            out["template_error"].append(terr)
        return out


def cache_key(cfg, tok, path: str, fmt: str) -> str:
    """Key of a tokenised file: the file (path, size, mtime), the tokenizer, the task and every
    setting that changes the tokens."""
    d = cfg.data
    settings = {k: getattr(d, k) for k in TOKEN_SETTINGS}
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "file": list(file_identity(path)),
            "tok": tokenizer_id(tok),
            "fmt": fmt,
            "task": cfg.model.task,
            "template": lookup(cfg).source if fmt in CHAT_FORMATS else None,
            "settings": settings,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load_file(cfg, tok, path: str, field: str, cache_dir: Path) -> Loaded:
    """A data file tokenised (or read back from the cache); DataErrors name `field` (or
    data.chat_template for a template that fails on a record)."""
    import datasets

    d = cfg.data
    fmt, how = file_format(cfg, path, field)
    template = None
    if fmt in CHAT_FORMATS:
        if cfg.model.task != "causal-lm":
            raise DataError(
                f"data.format: {fmt} records train a causal LM (set model.task: causal-lm, or data.format: text for classification)",
                "data.format",
            )
        try:
            template = lookup(cfg).label
        except TemplateError as exc:
            raise DataError(str(exc), "data.chat_template") from None
    key = cache_key(cfg, tok, path, fmt)
    target = cache_dir / "tok" / key
    t0 = time.perf_counter()
    if (target / "complete.json").is_file():
        ds = datasets.load_from_disk(str(target))
        return Loaded(ds, fmt, how, template, len(ds), True, time.perf_counter() - t0, target)
    kind = detect_format(path, d.file_format)
    try:
        raw = raw_dataset(path, kind, cache_dir)
    except DataError as exc:
        raise DataError(str(exc), field) from None
    nw = d.num_workers
    ds = raw.map(
        _Tokenise(cfg, tok, fmt, kind == "txt"),
        batched=True,
        batch_size=256,
        with_indices=True,
        num_proc=nw if nw > 1 and len(raw) > 1 else None,
        remove_columns=raw.column_names,
        load_from_cache_file=False,  # our own cache below is keyed by file, tokenizer and settings
        desc=None,
    )
    errors = [e for e in ds["error"] if e]
    if errors:
        raise record_problems(path, errors[:MAX_LISTED], len(errors), field)
    if "template_error" in ds.column_names:
        terrs = [e for e in ds["template_error"] if e]
        if terrs:
            raise template_problem(path, terrs[0], len(terrs))
        ds = ds.remove_columns(["template_error"])
    ds = ds.remove_columns(["error"])
    # Written to a temporary folder and renamed, so a crash never leaves half a cache behind.
    tmp = cache_dir / "tok" / f".{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    ds.save_to_disk(str(tmp))
    (tmp / "complete.json").write_text(json.dumps({"file": str(path), "format": fmt}))
    try:
        tmp.rename(target)
    except OSError:  # another rank or run won the race: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    ds = datasets.load_from_disk(str(target))
    return Loaded(ds, fmt, how, template, len(ds), False, time.perf_counter() - t0, target)
