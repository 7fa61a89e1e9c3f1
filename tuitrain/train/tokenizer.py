"""Provides the tokenizer a run trains with: the byte tokenizer or the pretrained model's own.

Apart from model.py so that model building does not import the data path (train.data imports
the SFT path, which imports model.py's SetupError).
"""

from __future__ import annotations

from tuitrain.config.paths import resolve_path
from tuitrain.config.schema import TrainConfig
from tuitrain.train.data import ByteTokenizer


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
