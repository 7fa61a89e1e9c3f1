"""Provides the one reader of training data: jsonl/json/csv/parquet/txt files, save_to_disk
folders and the Python stdlib corpus, as numbered records, torch-free.

The editor's estimate reads files through it, and so does the trainer (which hands the records
to HF `datasets` for tokenising and caching), so both see the same records in the same order,
and a file that cannot be read is the same error on both sides: the file, the line (or byte
offset) and the fix.
"""

from __future__ import annotations

import csv
import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path

KINDS = ("jsonl", "json", "csv", "parquet", "txt", "arrow")


class DataError(ValueError):
    """Data that cannot be used as configured; names the file, the record and the fix.
    `field` is the config field the error belongs under (data.train_file unless said)."""

    def __init__(self, message: str, field: str = "data.train_file"):
        super().__init__(message)
        self.field = field


def detect_format(path: str, fmt: str = "auto") -> str:
    """The file kind: `fmt` unless auto, else from the extension (a folder: save_to_disk)."""
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


def _not_utf8(path: Path, data: bytes, start: int, line: int, offset: int) -> DataError:
    """`data[start]` is the bad byte; `offset` its position in the file."""
    return DataError(
        f"{path}: not UTF-8 text at line {line} (byte offset {offset}: 0x{data[start]:02x}); "
        "save the file as UTF-8, or point data.train_file at a text data file"
    )


def _lines(p: Path) -> Iterator[tuple[int, str]]:
    """(line number, text with its newline) of a UTF-8 text file; a byte that is not UTF-8
    is a DataError naming the file, the line and the byte offset."""
    offset = 0
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(p, raw, exc.start, lineno, offset + exc.start) from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a byte-order mark is not part of the first record
            yield lineno, text
            offset += len(raw)


def _jsonl(p: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in _lines(p):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{p}:{lineno}: not valid JSON ({exc.msg}); each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{p}:{lineno}: not a JSON object (each line must be one object)")
        yield lineno, row


def _json(p: Path) -> Iterator[dict] | None:
    """The records of a .json file holding a list (or {"key": [...]}); None: JSON lines."""
    data = p.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _not_utf8(p, data, exc.start, line, exc.start) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None  # JSON lines under a .json name, as datasets' json loader reads them
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), list):
        obj = next(iter(obj.values()))  # {"data": [...]}
    if not isinstance(obj, list):
        raise DataError(f"{p}: a .json file must hold a list of records (or use .jsonl)")

    def rows() -> Iterator[dict]:
        for n, row in enumerate(obj, 1):
            if not isinstance(row, dict):
                raise DataError(f"{p}: record {n}: not a JSON object")
            yield row

    return rows()


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
    """The records of a data file as dicts, in file order (txt: {"text": line} per non-empty
    line). Unreadable files are DataErrors naming the file and where."""
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{path}: no such file (set data.train_file / data.validation_file to an existing file)"
        )
    kind = detect_format(path, fmt)
    if kind == "json":
        rows = _json(p)
        if rows is not None:
            yield from rows
            return
        kind = "jsonl"
    if kind == "jsonl":
        yield from (row for _, row in _jsonl(p))
    elif kind == "csv":
        dialect = "excel-tab" if p.suffix.lower() == ".tsv" else "excel"
        yield from csv.DictReader((line for _, line in _lines(p)), dialect=dialect)
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
        for _, line in _lines(p):
            if line.strip():
                yield {"text": line.rstrip("\r\n")}


def file_identity(path: str) -> tuple[str, int, int]:
    """(resolved path, size, newest mtime) of a file or save_to_disk folder, for cache keys."""
    p = Path(path).resolve()
    if p.is_dir():
        files = [f.stat() for f in p.rglob("*") if f.is_file()]
        return str(p), sum(s.st_size for s in files), max((s.st_mtime_ns for s in files), default=0)
    st = p.stat()
    return str(p), st.st_size, st.st_mtime_ns


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
