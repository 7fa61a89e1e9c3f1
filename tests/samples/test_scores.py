"""Scores of real answers: exact match and similarity against a reference, repetition of the
answer itself, and the per-evaluation means that become samples/* metrics."""

from __future__ import annotations

import pytest

from tuitrain.samples import scores


def test_exact_match_normalises_case_and_whitespace():
    ref = "Serialize obj to a JSON formatted str."
    assert scores.exact_match("  serialize obj to a JSON\nformatted   str. ", ref) == 1.0
    assert scores.exact_match("Serialize obj to a JSON formatted string.", ref) == 0.0
    assert scores.exact_match("", "") == 1.0


def test_similarity_is_rapidfuzz_ratio_on_a_0_to_1_scale():
    ref = "Return the absolute value of the argument."
    assert scores.similarity(ref.upper(), ref) == 1.0
    close = scores.similarity("Return the absolute value of an argument.", ref)
    far = scores.similarity("Rend|> Rend|> Rend|>", ref)
    assert 0.9 < close < 1.0
    assert 0.0 <= far < 0.4 < close
    assert scores.similarity("xyz", "abc") == 0.0


def test_repetition_of_degenerate_and_healthy_answers():
    assert scores.repetition("a a a a a") == pytest.approx(0.6)  # short: character 5-grams
    loop = "Return turn a a a a a a a a a a a a a a a a athe"
    assert scores.repetition(loop) > 0.6
    assert scores.repetition("Rend|> Rend|> Rend|> Rend|> Rend|>") > 0.7
    assert scores.repetition("eeeeeeeeeeeeeeeeeeee") > 0.9  # one "word": characters
    healthy = "Serialize obj to a JSON formatted str using this conversion table."
    assert scores.repetition(healthy) == 0.0
    # a sentence repeated twice: about half of its trigrams repeat
    twice = "the quick brown fox jumps over the lazy dog " * 2
    assert 0.4 < scores.repetition(twice) < 0.6
    assert scores.repetition("") == 0.0 and scores.repetition("abc") == 0.0
    # a short looping answer of the SFT demo at step 50: word trigrams would see no repeat
    demo = "Rend|>\nRe an a a arnd|im_end|>\nRe a a and|>\nRend|>\nRend|>\nRe"
    assert scores.repetition(demo) > 0.4
    # a long healthy paragraph (>= 32 words) counts word trigrams: common letter runs do not count
    para = (
        "The quick brown fox jumps over the lazy dog. Then the fox runs into the forest and the "
        "dog sleeps in the sun, while the farmer walks to the barn to feed the horses and the "
        "chickens."
    )
    assert scores.repetition(para) == 0.0
    assert scores.repetition(" ".join([para] * 2)) > 0.4
    # CJK without spaces uses characters, so a repeated phrase is still seen
    assert scores.repetition("我爱北京我爱北京我爱北京我爱北京") > 0.5


def test_score_without_reference_has_only_repetition():
    got = scores.score("a a a a a", None)
    assert got == {"exact_match": None, "similarity": None, "repetition": pytest.approx(0.6)}
    got = scores.score("Return x.", "return x.")
    assert got["exact_match"] == 1.0 and got["similarity"] == 1.0 and got["repetition"] == 0.0


def test_means_average_references_only_where_they_exist():
    rows = [
        scores.score("Return x.", "return x."),  # 1, 1, 0
        scores.score("Return y.", "Return x."),  # 0, ~0.89, 0
        scores.score("a a a a a", None),  # -, -, 0.6
    ]
    m = scores.means(rows)
    assert set(m) == set(scores.METRICS)
    assert m["samples/exact_match"] == 0.5
    assert m["samples/similarity"] == pytest.approx((1.0 + rows[1]["similarity"]) / 2)
    assert m["samples/repetition"] == pytest.approx(0.2)
    assert scores.means([scores.score("x", None)]) == {"samples/repetition": 0.0}
    assert scores.means([]) == {}
