"""Provides the tokenizer a run trains with (build_tokenizer), the byte tokenizer, the one way the data pipeline encodes text with any tokenizer,
and a tokenizer's identity for cache keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tuitrain.config.paths import resolve_path
from tuitrain.config.schema import TrainConfig

# Byte tokenizer: ids 0-255 are the raw UTF-8 bytes; three specials follow (vocab 259).
BYTE_PAD, BYTE_BOS, BYTE_EOS = 256, 257, 258
BYTE_VOCAB = 259


class ByteTokenizer:
    """UTF-8 bytes as token ids, plus pad/bos/eos; enough of the HF tokenizer API for training."""

    vocab_size = BYTE_VOCAB
    pad_token_id = BYTE_PAD
    bos_token_id = BYTE_BOS
    eos_token_id = BYTE_EOS

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (its UTF-8 bytes, no specials)."""
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, dropping specials; broken UTF-8 sequences become U+FFFD."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def num_special_tokens_to_add(self) -> int:
        """Specials a classification input gets (one bos in front)."""
        return 1

    def build_inputs_with_special_tokens(self, ids: list[int]) -> list[int]:
        """A classification input: bos, then the text's bytes."""
        return [BYTE_BOS, *ids]

    def save_pretrained(self, path: str | Path) -> None:
        """Write a small descriptor so an exported model says how it was tokenised."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "tuitrain_tokenizer.txt").write_text(
            "bytes: ids 0-255 = UTF-8 bytes, 256 pad, 257 bos, 258 eos\n"
        )


def encoder(tok):
    """texts -> token ids without added specials (templates write bos/eos where they want)."""
    if isinstance(tok, ByteTokenizer):
        return lambda texts: [tok.encode(t) for t in texts]
    return lambda texts: tok(texts, add_special_tokens=False)["input_ids"] if texts else []


def with_specials(tok, ids: list[int], max_len: int) -> list[int]:
    """A classification input: the text cut so that it fits max_len with the tokenizer's own
    special tokens around it (as `tok(text, truncation=True)` does)."""
    room = max(0, max_len - tok.num_special_tokens_to_add())
    build = getattr(tok, "build_inputs_with_special_tokens", None)
    if build is not None:  # the byte tokenizer, transformers 4
        return list(build(ids[:room]))
    pre, post = special_frame(tok)  # transformers 5's tokenizers backend has no build_inputs
    return [*pre, *ids[:room], *post]


def special_frame(tok) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one text ([CLS] / [SEP]), read off
    how it encodes a sample text with and without them (once per tokenizer: kept on it)."""
    frame = getattr(tok, "_tuitrain_special_frame", None)
    if frame is not None:
        return frame
    full = list(tok("a b", add_special_tokens=True)["input_ids"])
    bare = list(tok("a b", add_special_tokens=False)["input_ids"])
    frame = next(
        ((full[:i], full[i + len(bare) :]) for i in range(len(full) - len(bare) + 1)
         if full[i : i + len(bare)] == bare),
        ([], []),
    )  # fmt: skip
    try:
        tok._tuitrain_special_frame = frame
    except AttributeError:  # a tokenizer that refuses new attributes: read it again next time
        pass
    return frame


def tokenizer_id(tok) -> str:
    """What identifies a tokenizer's ids: 'bytes', or its name and a hash of its vocabulary."""
    if isinstance(tok, ByteTokenizer):
        return "bytes"
    vocab = sorted(tok.get_vocab().items())
    h = hashlib.sha256(json.dumps(vocab).encode())
    h.update(str(getattr(tok, "chat_template", "")).encode())
    return f"{getattr(tok, 'name_or_path', '')}:{h.hexdigest()[:16]}"


def build_tokenizer(cfg: TrainConfig):
    """The byte tokenizer, or the pretrained model's own (pad set to eos when it has none)."""
    if cfg.model.tokenizer == "bytes":
        return ByteTokenizer()
    from transformers import AutoTokenizer

    path = resolve_path(cfg.model.name_or_path)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    if tok.pad_token_id is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # causal LMs often ship without a pad token
    return tok
