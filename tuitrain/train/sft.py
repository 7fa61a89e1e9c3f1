"""Provides supervised fine-tuning data: chat / instruction files loaded through HF `datasets`,
rendered with a chat template, tokenised in parallel with an answer-only loss mask, cached by
file + tokenizer + settings, and served as padded or packed batches.

Labels are -100 on every token the loss must skip (prompts, system turns, padding). Packed
blocks carry position ids that restart at 0 for each example, so models whose attention reads
packed sequences from the position ids (transformers' masking utilities) keep examples apart;
`check_packing` proves that on the model itself before training starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from tuitrain.data.records import RecordError, pack_plan, to_messages, tokenise
from tuitrain.data.sources import MAX_LISTED, DataError, detect_format, record_problems
from tuitrain.data.templates import TemplateError, end_marker, jinja_renderer, template_source

CACHE_VERSION = 1  # bump when the tokenised layout changes


# ---- loading ---------------------------------------------------------------------------------
def load_rows(path: str, file_format: str, cache_dir: Path):
    """The file as an HF Dataset (jsonl/json/csv/parquet/txt, or a save_to_disk folder)."""
    import datasets

    datasets.disable_progress_bars()  # bars would flood train.log
    kind = detect_format(path, file_format)
    if not Path(path).exists():
        raise DataError(
            f"{path}: no such file (set data.train_file / data.validation_file to an existing file)"
        )
    if kind == "arrow":
        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        return ds
    builder = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet", "txt": "text"}[
        kind
    ]
    kw = {"delimiter": "\t"} if kind == "csv" and path.endswith(".tsv") else {}
    try:
        ds = datasets.load_dataset(
            builder, data_files=str(path), split="train", cache_dir=str(cache_dir / "hf"), **kw
        )
    except Exception as exc:  # datasets raises many types for unreadable files
        raise DataError(
            f"{path}: cannot be read as {kind} ({type(exc).__name__}: {str(exc)[:300]}); fix the file or set data.file_format"
        ) from None
    if kind == "txt":
        ds = ds.filter(
            lambda r: bool(r["text"].strip())
        )  # as the torch-free reader: no blank lines
    return ds


# ---- templates -------------------------------------------------------------------------------
def chat_render(cfg, tok):
    """(render(messages, add_generation_prompt) -> str, label) for the run's chat template."""
    from tuitrain.train.data import ByteTokenizer

    own = None if isinstance(tok, ByteTokenizer) else getattr(tok, "chat_template", None)
    try:
        label, source = template_source(cfg.data.chat_template, own)
    except TemplateError as exc:
        raise DataError(str(exc)) from None
    if isinstance(tok, ByteTokenizer):
        return jinja_renderer(source, {"bos_token": "", "eos_token": ""}), label
    # The tokenizer's template compiled once and rendered as apply_chat_template does (its
    # special tokens as variables); per-call apply_chat_template costs ~10x more per record.
    specials = {
        k: str(v) for k, v in getattr(tok, "special_tokens_map", {}).items() if isinstance(v, str)
    }
    return jinja_renderer(source, specials), label


def encoder(tok):
    """texts -> token ids without added specials (the template writes bos/eos where it wants)."""
    from tuitrain.train.data import ByteTokenizer

    if isinstance(tok, ByteTokenizer):
        return lambda texts: [tok.encode(t) for t in texts]
    return lambda texts: tok(texts, add_special_tokens=False)["input_ids"] if texts else []


class _Tokenise:
    """The `datasets.map` function (batched, with indices); picklable for worker processes,
    the renderer is rebuilt in each worker."""

    def __init__(self, cfg, tok, fmt: str):
        self.cfg, self.tok, self.fmt = cfg, tok, fmt
        self._fns = None

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "tok": self.tok, "fmt": self.fmt, "_fns": None}

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        if self._fns is None:
            self._fns = (chat_render(self.cfg, self.tok)[0], encoder(self.tok))
        render, encode = self._fns
        d = self.cfg.data
        out: dict[str, list] = {
            "input_ids": [],
            "mask": [],
            "length": [],
            "answer": [],
            "error": [],
        }
        keys = list(batch)
        for j, n in enumerate(indices):
            row = {k: batch[k][j] for k in keys}
            try:
                t = tokenise(to_messages(row, self.fmt, d), render, encode, d.max_seq_length)
                err = ""
            except (RecordError, TemplateError) as exc:
                t, err = None, f"record {n + 1}: {exc}"
            out["input_ids"].append(t.ids if t else [])
            out["mask"].append(t.mask if t else [])
            out["length"].append(t.length if t else 0)
            out["answer"].append(t.answer_tokens if t else 0)
            out["error"].append(err)
        return out


def _tokenizer_id(tok) -> str:
    from tuitrain.train.data import ByteTokenizer

    if isinstance(tok, ByteTokenizer):
        return "bytes"
    vocab = sorted(tok.get_vocab().items())
    h = hashlib.sha256(json.dumps(vocab).encode())
    h.update(str(getattr(tok, "chat_template", "")).encode())
    return f"{getattr(tok, 'name_or_path', '')}:{h.hexdigest()[:16]}"


def cache_key(cfg, tok, path: str, fmt: str) -> str:
    """Key of a tokenised file: the file (path, size, mtime), the tokenizer and every setting
    that changes the tokens."""
    p = Path(path).resolve()
    if p.is_dir():
        st = max((f.stat() for f in p.rglob("*") if f.is_file()), key=lambda s: s.st_mtime_ns)
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    else:
        st = p.stat()
        size = st.st_size
    d = cfg.data
    settings = {
        k: getattr(d, k)
        for k in (
            "format",
            "file_format",
            "prompt_field",
            "completion_field",
            "instruction_field",
            "input_field",
            "output_field",
            "messages_field",
            "chat_template",
            "max_seq_length",
        )
    }
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "file": str(p),
            "size": size,
            "mtime": st.st_mtime_ns,
            "tok": _tokenizer_id(tok),
            "fmt": fmt,
            "settings": settings,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class SftFile:
    """One tokenised file and what happened on the way (for the run's events)."""

    examples: RaggedExamples
    fmt: str
    how: str
    template: str
    records: int
    truncated: int
    dropped: int
    cached: bool
    key: str
    notes: list[tuple[str, str]] = field(default_factory=list)


def tokenised(cfg, tok, path: str, raw, fmt: str, cache_dir: Path) -> tuple:
    """(tokenised HF dataset, cached?, key) for a chat/instruction file already loaded as `raw`."""
    import datasets

    d = cfg.data
    key = cache_key(cfg, tok, path, fmt)
    target = cache_dir / "sft" / key
    if (target / "complete.json").is_file():
        return datasets.load_from_disk(str(target)), True, key
    fn = _Tokenise(cfg, tok, fmt)
    nw = d.num_workers
    ds = raw.map(
        fn,
        batched=True,
        batch_size=256,
        with_indices=True,
        num_proc=nw if nw > 1 else None,
        remove_columns=raw.column_names,
        load_from_cache_file=False,  # our own cache below is keyed by file, tokenizer and settings
        desc=None,
    )
    errors = [e for e in ds["error"] if e]
    if errors:
        raise record_problems(path, errors[:MAX_LISTED], len(errors))
    # Written to a temporary folder and renamed, so a crash never leaves half a cache behind.
    tmp = cache_dir / "sft" / f".{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    ds.save_to_disk(str(tmp))
    (tmp / "complete.json").write_text(json.dumps({"file": str(path), "format": fmt}))
    try:
        tmp.rename(target)
    except OSError:  # another rank or run won the race: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(target)), False, key


def _ragged(
    ds, pad_id: int, packed: bool, max_len: int, on_prompt: bool
) -> tuple[RaggedExamples, int, int]:
    """Ragged tensors straight from the Arrow columns (no per-example Python objects)."""
    import numpy as np

    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    ids_col = table.column("input_ids").combine_chunks()
    mask_col = table.column("mask").combine_chunks()
    offsets = torch.from_numpy(np.asarray(ids_col.offsets, dtype=np.int64))
    ids = torch.from_numpy(np.asarray(ids_col.values).astype(np.int64))
    mask = torch.from_numpy(np.asarray(mask_col.values).astype(np.bool_))
    lengths_full = np.asarray(table.column("length"))
    answer = torch.from_numpy(np.asarray(table.column("answer")).astype(np.int64))
    truncated = int((lengths_full > max_len).sum())
    keep = answer > 0  # an answer cut to nothing teaches nothing: the record is dropped
    dropped = int((~keep).sum())
    lengths = offsets[1:] - offsets[:-1]
    if dropped:
        tok_keep = torch.repeat_interleave(keep, lengths)
        ids, mask, lengths = ids[tok_keep], mask[tok_keep], lengths[keep]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    if packed:
        units = torch.tensor(pack_plan(lengths.tolist(), max_len), dtype=torch.long).view(-1, 2)
    else:
        n = len(lengths)
        units = torch.stack([torch.arange(n), torch.arange(1, n + 1)], 1)
    return RaggedExamples(ids, mask, offsets, units, packed, pad_id, on_prompt), truncated, dropped


def build_file(cfg, tok, path: str, raw, fmt: str, how: str, cache_dir: Path) -> SftFile:
    """A chat/instruction file, tokenised (or read back from the cache) and ready to batch."""
    raw_ds, cached, key = tokenised(cfg, tok, path, raw, fmt, cache_dir)
    _, label = chat_render(cfg, tok)
    packed = cfg.data.packing
    ex, truncated, dropped = _ragged(
        raw_ds, tok.pad_token_id or 0, packed, cfg.data.max_seq_length, cfg.data.train_on_prompt
    )
    return SftFile(ex, fmt, how, label, len(raw_ds), truncated, dropped, cached, key)


def held_out_prompts(val: RaggedExamples | None, n: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, expected answer ids) of the first answer turn of the first `n` validation
    examples: the rendered prompt ends with the template's generation prompt."""
    out: list[tuple[list[int], list[int]]] = []
    if val is None:
        return out
    for u in range(min(n, len(val))):
        s = int(val.units[u, 0])
        a, b = int(val.offsets[s]), int(val.offsets[s + 1])
        ids, mask = val.ids[a:b], val.mask[a:b]
        hits = mask.nonzero()
        if not len(hits):
            continue
        first = int(hits[0])
        rest = mask[first:]
        end = first + (int((~rest).nonzero()[0]) if bool((~rest).any()) else len(rest))
        out.append((ids[:first].tolist(), ids[first:end].tolist()))
    return out


# ---- batches ---------------------------------------------------------------------------------
@dataclass
class RaggedExamples:
    """Variable-length tokenised examples; a unit (what a batch index picks) is one example, or a
    packed block of consecutive examples."""

    ids: torch.Tensor  # all tokens, int64
    mask: torch.Tensor  # bool per token: an answer token
    offsets: torch.Tensor  # (examples + 1) token offsets
    units: torch.Tensor  # (units, 2) example ranges [first, end)
    packed: bool
    pad_id: int
    on_prompt: bool = False  # data.train_on_prompt: the loss is on every token

    def __len__(self) -> int:
        return int(self.units.shape[0])

    def subset(self, idx: torch.Tensor) -> RaggedExamples:
        """The units at `idx`, as a new RaggedExamples (tokens are shared, not copied)."""
        return replace(self, units=self.units[idx])

    def unit(self, u: int) -> dict[str, torch.Tensor]:
        """One unit's ids, labels (-100 off the answers) and, when packed, position ids."""
        s, e = self.units[u].tolist()
        a = int(self.offsets[s])
        b = int(self.offsets[e])
        ids = self.ids[a:b]
        labels = ids.clone() if self.on_prompt else ids.masked_fill(~self.mask[a:b], -100)
        out = {"input_ids": ids, "labels": labels}
        if self.packed:
            starts = self.offsets[s:e] - a
            lens = self.offsets[s + 1 : e + 1] - self.offsets[s:e]
            out["position_ids"] = torch.arange(b - a) - torch.repeat_interleave(starts, lens)
            # No example learns its first token from the end of the one before it.
            labels[starts] = -100
        return out

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Units at `idx`, right-padded to the longest: labels -100 on padding; packed batches
        carry position_ids (padding counts as one more sequence) and no attention mask, so the
        model reads the example boundaries from the position ids."""
        rows = [self.unit(u) for u in idx.tolist()]
        longest = max(len(r["input_ids"]) for r in rows)
        n = len(rows)
        ids = torch.full((n, longest), self.pad_id, dtype=torch.long)
        labels = torch.full((n, longest), -100, dtype=torch.long)
        out = {"input_ids": ids, "labels": labels}
        if self.packed:
            pos = torch.arange(longest).repeat(n, 1)
            out["position_ids"] = pos
        else:
            att = torch.zeros((n, longest), dtype=torch.long)
            out["attention_mask"] = att
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = r["input_ids"]
            labels[i, :k] = r["labels"]
            if self.packed:
                pos[i, :k] = r["position_ids"]
                pos[i, k:] = torch.arange(longest - k)
            else:
                att[i, :k] = 1
        return out

    def answer_tokens(self) -> int:
        """Tokens the loss is on, over all units."""
        return sum(int(self.unit(u)["labels"].ne(-100).sum()) for u in range(len(self)))


# ---- packing guarantee -----------------------------------------------------------------------
@torch.no_grad()
def packing_isolated(model) -> bool:
    """Whether the model keeps packed examples apart: example B's logits inside a packed block
    (position ids restarting at 0) equal B's logits alone."""
    net = model
    was_training = net.training
    net.eval()
    try:
        p = next(net.parameters())
        vocab = int(getattr(net.config, "vocab_size", 2) or 2)
        g = torch.Generator().manual_seed(0)
        a = torch.randint(0, vocab, (5,), generator=g).to(p.device)
        b = torch.randint(0, vocab, (4,), generator=g).to(p.device)
        x = torch.cat([a, b])[None]
        pos = torch.cat([torch.arange(5), torch.arange(4)])[None].to(p.device)
        packed = net(input_ids=x, position_ids=pos, use_cache=False).logits[0, 5:].float()
        alone = net(input_ids=b[None], use_cache=False).logits[0].float()
        joined = net(input_ids=x, use_cache=False).logits[0, 5:].float()
    finally:
        if was_training:
            net.train()
    err = (packed - alone).abs().max().item()
    cross = (joined - alone).abs().max().item()
    tol = 1e-4 if p.dtype == torch.float32 else 3e-2
    return err <= tol * max(1.0, alone.abs().max().item()) and err < 0.1 * max(cross, 1e-12)


def check_packing(cfg, model, splits) -> str | None:
    """Before training: a packed chat/instruction run on a model that cannot keep examples apart
    fails unless data.allow_cross_attention; returns a note for the run's events (or None)."""
    from tuitrain.train.model import SetupError

    if not isinstance(splits.train, RaggedExamples) or not splits.train.packed:
        return None
    if packing_isolated(model):
        return (
            "packing: examples kept apart (position ids restart per example; checked on this model)"
        )
    if not cfg.data.allow_cross_attention:
        raise SetupError(
            "data.packing: this model does not keep packed examples apart (its attention ignores "
            "per-example position ids), so packed examples would attend to each other; set "
            "data.packing: false, or data.allow_cross_attention: true to pack anyway"
        )
    return "packing WITHOUT isolation: packed examples can attend to earlier ones in their block (data.allow_cross_attention)"


def answer_end(cfg, tok) -> str:
    """The text a template writes after an answer (generation samples are cut there)."""
    render, _ = chat_render(cfg, tok)
    return end_marker(render)


def sample_prompts(cfg, tok, splits) -> list[tuple[str, list[int]]]:
    """(shown prompt, token ids) to sample at each evaluation: generation.prompts rendered with
    the chat template (a string is one user message), then the held-out validation prompts."""
    render, _ = chat_render(cfg, tok)
    enc = encoder(tok)
    out: list[tuple[str, list[int]]] = []
    for p in cfg.generation.prompts:
        msgs = (
            [{"role": "user", "content": p}]
            if isinstance(p, str)
            else [{"role": m.role, "content": m.content} for m in p]
        )
        shown = (
            msgs[-1]["content"] if isinstance(p, str) else " | ".join(m["content"] for m in msgs)
        )
        out.append((shown, enc([render(msgs, True)])[0]))
    for ids, _answer in splits.held_out:
        out.append((_last_user_turn(tok.decode(ids), render), ids))
    return out


def _last_user_turn(prompt: str, render) -> str:
    """A readable form of a rendered prompt: the text between the template's markers."""
    probe = "\x00q\x00"
    shape = render([{"role": "user", "content": probe}], True)
    head, _, tail = shape.partition(probe)
    text = prompt
    if head and head.strip() in text:
        text = text.rsplit(head.strip(), 1)[-1]
    if tail and tail.strip() and tail.strip() in text:
        text = text.split(tail.strip(), 1)[0]
    return text.strip()
