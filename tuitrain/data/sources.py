"""Provides torch-free readers for training data (jsonl/json/csv/parquet/txt files, save_to_disk
folders, the Python stdlib corpus) and the editor's data summary (format, template, truncation).

The trainer loads files through HF `datasets` (which only the training process imports); the
config layer and the editor use these readers to estimate dataset size and truncation without
torch. Record formats and their tokenisation live in `tuitrain.data.records`, shared by both sides.
"""

from __future__ import annotations

import csv
import json
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """A data file that cannot be read as configured; names the file, the line and the fix."""


@dataclass(frozen=True)
class Record:
    """One example: its text and, for classification, its raw label."""

    text: str
    label: object = None


def detect_format(path: str, fmt: str = "auto") -> str:
    """The file format: `fmt` unless auto, else from the extension (a folder: save_to_disk)."""
    if fmt != "auto":
        return fmt
    if Path(path).is_dir():
        return "arrow"
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "txt"


def _jsonl_rows(p: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line of a JSON-lines file."""
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{p}:{lineno}: not valid JSON ({exc.msg}); each line must be one JSON object"
                ) from exc
            if not isinstance(row, dict):
                raise DataError(f"{p}:{lineno}: not a JSON object (each line must be one object)")
            yield lineno, row


def read_records(
    path: str, fmt: str = "auto", text_field: str = "text", label_field: str | None = None
) -> Iterator[Record]:
    """Yield records from a jsonl, csv or txt file (txt: one record per non-empty line)."""
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{path}: no such file (set data.train_file / data.validation_file to an existing file)"
        )
    kind = detect_format(path, fmt)
    if kind in ("json", "parquet", "arrow"):
        for n, row in enumerate(read_rows(path, kind), 1):
            if text_field not in row:
                raise DataError(
                    f"{path}: record {n}: no field {text_field!r} (set data.text_field to the key holding the text)"
                )
            yield Record(str(row[text_field]), row.get(label_field) if label_field else None)
        return
    if kind == "jsonl":
        for lineno, obj in _jsonl_rows(p):
            if text_field not in obj:
                raise DataError(
                    f"{path}:{lineno}: no field {text_field!r} (set data.text_field to the key holding the text)"
                )
            yield Record(str(obj[text_field]), obj.get(label_field) if label_field else None)
    elif kind == "csv":
        with p.open(encoding="utf-8", newline="") as fh:
            dialect = "excel-tab" if p.suffix.lower() == ".tsv" else "excel"
            reader = csv.DictReader(fh, dialect=dialect)
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                raise DataError(
                    f"{path}:1: no column {text_field!r} in {reader.fieldnames} (set data.text_field)"
                )
            for row in reader:
                yield Record(row[text_field], row.get(label_field) if label_field else None)
    else:
        with p.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    yield Record(line.rstrip("\n"))


def stdlib_files(max_bytes: int) -> list[Path]:
    """This interpreter's own stdlib .py files, in a fixed order, up to max_bytes in total."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    total = 0
    for f in sorted(root.glob("*.py")):
        size = f.stat().st_size
        if size == 0:
            continue
        files.append(f)
        total += size
        if total >= max_bytes:
            break
    return files


def stdlib_bytes(max_bytes: int) -> bytes:
    """The stdlib corpus as one byte string (files joined by blank lines), at most max_bytes."""
    parts = [f.read_bytes() for f in stdlib_files(max_bytes)]
    return b"\n\n".join(parts)[:max_bytes]


def split_counts(n: int, validation_split: float) -> tuple[int, int]:
    """(train, validation) sizes when validation is split off n examples; the split is taken
    from the end after a seeded shuffle, by the trainer and the estimator alike."""
    if validation_split <= 0 or n < 2:
        return n, 0
    n_val = min(n - 1, max(1, round(n * validation_split)))
    return n - n_val, n_val


def _arrow_files(folder: Path) -> list[Path]:
    """The .arrow files of a save_to_disk folder (a DatasetDict folder: its train split)."""
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits") or []
        if not splits:
            raise DataError(
                f"{folder}: an empty DatasetDict folder (save a split with save_to_disk)"
            )
        folder = folder / ("train" if "train" in splits else splits[0])
    state = folder / "state.json"
    if not state.is_file():
        raise DataError(
            f"{folder}: not a folder saved with datasets' save_to_disk (no state.json; point data.train_file at a file or such a folder)"
        )
    return [folder / f["filename"] for f in json.loads(state.read_text()).get("_data_files", [])]


def read_rows(path: str, fmt: str = "auto") -> Iterator[dict]:
    """Yield the records of a data file as dicts (txt: {"text": line} per non-empty line)."""
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{path}: no such file (set data.train_file / data.validation_file to an existing file)"
        )
    kind = detect_format(path, fmt)
    if kind == "json":
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            kind = "jsonl"  # JSON lines under a .json name, as datasets' json loader reads them
        else:
            if (
                isinstance(obj, dict)
                and len(obj) == 1
                and isinstance(next(iter(obj.values())), list)
            ):
                obj = next(iter(obj.values()))  # {"data": [...]}
            if not isinstance(obj, list):
                raise DataError(f"{path}: a .json file must hold a list of records (or use .jsonl)")
            for n, row in enumerate(obj, 1):
                if not isinstance(row, dict):
                    raise DataError(f"{path}: record {n}: not a JSON object")
                yield row
            return
    if kind == "jsonl":
        yield from (row for _, row in _jsonl_rows(p))
    elif kind == "csv":
        with p.open(encoding="utf-8", newline="") as fh:
            dialect = "excel-tab" if p.suffix.lower() == ".tsv" else "excel"
            yield from csv.DictReader(fh, dialect=dialect)
    elif kind == "parquet":
        import pyarrow.parquet as pq  # only for parquet files: pyarrow is heavy to import

        for batch in pq.ParquetFile(p).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    elif kind == "arrow":
        import pyarrow as pa

        for f in _arrow_files(p):
            with pa.memory_map(str(f)) as src:
                for batch in pa.ipc.open_stream(src):
                    yield from batch.to_pylist()
    else:
        with p.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    yield {"text": line.rstrip("\n")}


# ---- the editor's data summary ---------------------------------------------------------------

# Without the tokenizer at hand, a subword model averages roughly 4 characters per token.
CHARS_PER_TOKEN = 4.0
# The editor tokenises at most this many records and extrapolates (marked as an estimate).
SUMMARY_SAMPLE = 5000
# Malformed records listed in one error (the count of the rest follows).
MAX_LISTED = 50


@dataclass(frozen=True)
class DataSummary:
    """What the editor shows about a data file: format, template and truncation."""

    format: str
    how: str  # "set by data.format" or "detected from the 'messages' key"
    template: str | None  # label of the chat template (chat/instruction formats)
    examples: int  # records in the file
    truncated: int  # records longer than max_seq_length (in the tokenised sample, scaled)
    dropped: int  # records whose answer would be cut to nothing (skipped by the trainer)
    units: int  # training units before the split: examples, or packed blocks
    estimated: bool  # token counts approximated (no tokenizer here, or a sample)

    @property
    def truncated_share(self) -> float:
        """Share of records longer than max_seq_length."""
        return self.truncated / self.examples if self.examples else 0.0

    def truncation_line(self) -> str:
        """E.g. '12% of examples truncated (120 of 1000)'."""
        approx = "~" if self.estimated else ""
        text = f"{approx}{self.truncated_share:.0%} of examples truncated ({approx}{self.truncated} of {self.examples})"
        if self.dropped:
            text += f"; {approx}{self.dropped} dropped (prompt fills max_seq_length)"
        return text


def tokenizer_template(cfg) -> str | None:
    """The pretrained tokenizer's own chat template, read from local files (None if unknown)."""
    name = cfg.model.name_or_path
    if cfg.model.tokenizer == "bytes" or not name:
        return None
    try:
        from tuitrain.config.paths import resolve_path

        folder = Path(resolve_path(name))
    except (ValueError, ImportError):
        return None
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    conf = folder / "tokenizer_config.json"
    if conf.is_file():
        tmpl = json.loads(conf.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(tmpl, list):  # named templates: the default one
            tmpl = next((t.get("template") for t in tmpl if t.get("name") == "default"), None)
        return tmpl if isinstance(tmpl, str) else None
    return None


def record_problems(path: str, problems: list[str], total: int) -> DataError:
    """One DataError listing malformed records (file, record number, field) all at once."""
    shown = "\n".join(f"  {path}: {p}" for p in problems[:MAX_LISTED])
    more = total - min(total, MAX_LISTED)
    tail = f"\n  ... and {more} more" if more else ""
    return DataError(
        f"{total} malformed record{'s' if total != 1 else ''} in {path} (fix them, or set the data.*_field names):\n{shown}{tail}"
    )


def _summary_key(cfg, path: str) -> tuple:
    p = Path(path)
    st = p.stat()
    d, m = cfg.data, cfg.model
    return (
        str(p.resolve()),
        st.st_mtime_ns,
        st.st_size,
        m.tokenizer,
        m.name_or_path,
        m.task,
        tuple(sorted(d.model_dump().items(), key=lambda kv: kv[0])).__repr__(),
    )


def data_summary(cfg, path: str | None = None, cached_only: bool = False) -> DataSummary | None:
    """Format, template and truncation of the training file (or `path`); None without one.
    Raises DataError for unreadable files and malformed records (all of them, with numbers).
    `cached_only`: never read the file (for the UI thread), None unless already summarised."""
    path = path or cfg.data.train_file
    if cfg.data.source != "file" or not path:
        return None
    if not Path(path).exists():
        if cached_only:
            return None
        raise DataError(
            f"{path}: no such file (set data.train_file / data.validation_file to an existing file)"
        )
    key = _summary_key(cfg, path)
    if cached_only:
        return _SUMMARIES.get(key)
    if key not in _SUMMARIES:
        if len(_SUMMARIES) >= 8:
            _SUMMARIES.pop(next(iter(_SUMMARIES)))
        _SUMMARIES[key] = _summarise(cfg, path)
    return _SUMMARIES[key]


# Summaries by (file identity, settings): the editor's worker computes one, its panel reads it.
_SUMMARIES: dict[tuple, DataSummary] = {}


def _summarise(cfg, path: str) -> DataSummary:
    from tuitrain.data.records import CHAT_FORMATS, RecordError, detect, to_messages, tokenise

    d = cfg.data
    rows = read_rows(path, d.file_format)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path} holds no examples (point it at a non-empty file)")
    try:
        fmt, how = (
            ("text", "a .txt file")
            if detect_format(path, d.file_format) == "txt"
            else detect(first, d)
        )
    except RecordError as exc:
        raise DataError(f"{path}: record 1: {exc}") from None
    txt = detect_format(path, d.file_format) == "txt"
    exact = cfg.model.tokenizer == "bytes"
    L = d.max_seq_length
    if fmt not in CHAT_FORMATS:
        n = truncated = 0
        for row in [first, *rows]:
            n += 1
            text = str(row.get("text" if txt else d.text_field, ""))
            size = len(text.encode("utf-8")) + 1 if exact else len(text) / CHARS_PER_TOKEN
            truncated += size > L
        packed = cfg.model.task == "causal-lm" and d.packing
        return DataSummary(fmt, how, None, n, 0 if packed else truncated, 0, n, not exact)
    render, label = _renderer(cfg)

    def encode(texts: list[str]) -> list[list[int]]:
        if exact:
            return [list(t.encode("utf-8")) for t in texts]
        return [[0] * max(1, round(len(t) / CHARS_PER_TOKEN)) if t else [] for t in texts]

    problems: list[str] = []
    n_problems = n = truncated = dropped = 0
    lengths: list[int] = []
    for n, row in enumerate([first, *rows], 1):
        try:
            msgs = to_messages(row, fmt, d)
        except RecordError as exc:
            n_problems += 1
            if len(problems) < MAX_LISTED:
                problems.append(f"record {n}: {exc}")
            continue
        if n > SUMMARY_SAMPLE:
            continue  # counted, checked; not tokenised
        t = tokenise(msgs, render, encode, L)
        truncated += t.length > L
        if t.answer_tokens == 0:
            dropped += 1
        else:
            lengths.append(len(t.ids))
    if n_problems:
        raise record_problems(path, problems, n_problems)
    sampled = min(n, SUMMARY_SAMPLE)
    scale = n / sampled
    if d.packing and cfg.model.task == "causal-lm":
        from tuitrain.data.records import pack_plan

        units = round(len(pack_plan(lengths, L)) * scale)
    else:
        units = round(len(lengths) * scale)
    return DataSummary(
        fmt,
        how,
        label,
        n,
        round(truncated * scale),
        round(dropped * scale),
        units,
        not exact or n > SUMMARY_SAMPLE,
    )


def _renderer(cfg):
    """(render, label) of the config's chat template, without loading a tokenizer."""
    from tuitrain.data.templates import TemplateError, jinja_renderer, template_source

    try:
        label, source = template_source(cfg.data.chat_template, tokenizer_template(cfg))
    except TemplateError as exc:
        raise DataError(str(exc)) from None
    try:
        return jinja_renderer(source, _special_tokens(cfg)), label
    except TemplateError as exc:
        raise DataError(str(exc)) from None


def _special_tokens(cfg) -> dict[str, str]:
    """bos/eos token strings for templates that write them ({{ bos_token }})."""
    if cfg.model.tokenizer == "bytes" or not cfg.model.name_or_path:
        return {"bos_token": "", "eos_token": ""}
    try:
        from tuitrain.config.paths import resolve_path

        conf = Path(resolve_path(cfg.model.name_or_path)) / "tokenizer_config.json"
        raw = json.loads(conf.read_text(encoding="utf-8")) if conf.is_file() else {}
    except (ValueError, OSError):
        raw = {}
    out = {}
    for k in ("bos_token", "eos_token", "pad_token", "unk_token"):
        v = raw.get(k)
        out[k] = v.get("content", "") if isinstance(v, dict) else (v or "")
    return out
