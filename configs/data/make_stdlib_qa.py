"""Provides the SFT demo's data: questions about Python standard-library functions, answered with
the first line of their docstrings (chat records, made offline from this interpreter).

    python configs/data/make_stdlib_qa.py        # rewrites configs/data/stdlib-qa.jsonl
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
from pathlib import Path

MODULES = (
    "os",
    "os.path",
    "json",
    "re",
    "math",
    "string",
    "textwrap",
    "shutil",
    "itertools",
    "functools",
    "operator",
    "statistics",
    "random",
    "heapq",
    "bisect",
    "base64",
    "binascii",
    "glob",
    "fnmatch",
    "tempfile",
    "time",
    "calendar",
    "copy",
    "pprint",
    "difflib",
    "html",
    "urllib.parse",
    "zlib",
    "gzip",
    "hashlib",
    "hmac",
    "secrets",
    "uuid",
    "platform",
    "shlex",
    "struct",
    "keyword",
    "unicodedata",
    "inspect",
    "warnings",
    "traceback",
    "linecache",
    "pathlib",
    "colorsys",
    "cmath",
    "decimal",
    "fractions",
    "csv",
    "sqlite3",
    "ssl",
    "socket",
)
QUESTIONS = (
    "What does {name} do?",
    "Explain {name} in one line.",
    "What is {name} for?",
)


def first_line(obj) -> str | None:
    doc = inspect.getdoc(obj)
    if not doc:
        return None
    line = doc.strip().splitlines()[0].strip()
    # Signature lines ("dumps(obj, ...)") and very short or long lines make poor answers.
    if "(" in line.split(" ")[0] or not 12 <= len(line) <= 110 or not line[0].isupper():
        return None
    return line


def main() -> None:
    seen: set[str] = set()
    records = []
    for mod_name in MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        for attr in sorted(dir(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr)
            if not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            name = f"{mod_name}.{attr}"
            answer = first_line(obj)
            if answer is None or answer in seen:
                continue
            seen.add(answer)
            for q in QUESTIONS:
                records.append(
                    {
                        "messages": [
                            {"role": "user", "content": q.format(name=name)},
                            {"role": "assistant", "content": answer},
                        ]
                    }
                )
    random.Random(0).shuffle(records)
    out = Path(__file__).with_name("stdlib-qa.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    print(f"{len(records)} records -> {out}")


if __name__ == "__main__":
    main()
