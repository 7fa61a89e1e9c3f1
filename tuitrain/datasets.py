"""Provides torch-free readers for training text: jsonl/csv/txt files and the Python stdlib corpus.

The trainer tokenises what these yield; the config layer uses them to estimate dataset size
for derived values (total steps, warmup) without importing torch.
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
    """The file format: `fmt` unless auto, else from the extension."""
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "txt"


def read_records(
    path: str, fmt: str = "auto", text_field: str = "text", label_field: str | None = None
) -> Iterator[Record]:
    """Yield records from a jsonl, csv or txt file (txt: one record per non-empty line)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"{path}: no such file (set data.train_file / data.validation_file to an existing file)"
        )
    kind = detect_format(path, fmt)
    if kind == "jsonl":
        with p.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be one JSON object"
                    ) from exc
                if not isinstance(obj, dict) or text_field not in obj:
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
