"""Provides the scores of one generated answer: exact match and similarity against the reference
answer (where one exists) and the repetition rate of the answer itself, plus their per-evaluation
means as the metrics `samples/exact_match`, `samples/similarity` and `samples/repetition`.

Every score lies in 0..1, so the three chart on one axis:
- exact_match: 1.0 when the answer equals the reference after normalising (strip, whitespace
  runs collapsed to one space, casefolded), else 0.0.
- similarity: rapidfuzz's `fuzz.ratio` (normalised Indel similarity) of the two normalised texts,
  divided by 100: 1.0 identical, 0.0 nothing in common.
- repetition: the share of the answer's n-grams that repeat an earlier n-gram of the same answer
  (1 - distinct / total). Character 5-grams of the answer with whitespace collapsed, which see
  the loops of a short answer (`Rend|> Rend|> Re a a and|>` 0.45; word trigrams miss them) and
  work for text without spaces (CJK); word trigrams once the answer has at least 32 words of
  ordinary length (12 characters or less on average), where common letter runs (` the `) would
  make a long healthy answer look repetitive. 0.0 when it has fewer than two n-grams (nothing
  can repeat). `a a a a a` scores 0.6; one-sentence healthy answers 0.0, a 180-character
  paragraph about 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from rapidfuzz import fuzz

WORD_N = 3  # word n-gram size (long answers)
CHAR_N = 5  # character n-gram size (short answers)
LONG_ANSWER = 32  # words from which an answer's repetition counts word n-grams
LONG_WORD = 12.0  # mean word length above which the text is not split into words (CJK, no spaces)
METRICS = ("samples/exact_match", "samples/similarity", "samples/repetition")


def normalise(text: str) -> str:
    """The text as scores compare it: stripped, whitespace runs as one space, casefolded."""
    return " ".join(str(text).split()).casefold()


def exact_match(output: str, reference: str) -> float:
    """1.0 when the normalised answer equals the normalised reference, else 0.0."""
    return 1.0 if normalise(output) == normalise(reference) else 0.0


def similarity(output: str, reference: str) -> float:
    """rapidfuzz fuzz.ratio of the normalised texts on a 0..1 scale (1.0: identical)."""
    return fuzz.ratio(normalise(output), normalise(reference)) / 100.0


def ngrams(output: str, n: int = WORD_N, char_n: int = CHAR_N) -> list[tuple[str, ...] | str]:
    """The n-grams repetition counts: character n-grams, or word n-grams for a long answer of
    ordinary words (see the module docstring)."""
    words = str(output).split()
    if len(words) >= LONG_ANSWER and sum(map(len, words)) / len(words) <= LONG_WORD:
        return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    text = " ".join(words)
    return [text[i : i + char_n] for i in range(len(text) - char_n + 1)]


def repetition(output: str, n: int = WORD_N, char_n: int = CHAR_N) -> float:
    """The share of the answer's n-grams that repeat an earlier one (0.0 none .. near 1.0 one
    phrase over and over); 0.0 for an answer too short to repeat anything."""
    grams = ngrams(output, n, char_n)
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def score(output: str, reference: str | None) -> dict[str, float | None]:
    """{exact_match, similarity, repetition} of one answer; the first two None without a reference."""
    has_ref = reference is not None
    return {
        "exact_match": exact_match(output, reference) if has_ref else None,
        "similarity": similarity(output, reference) if has_ref else None,
        "repetition": repetition(output),
    }


def means(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The per-evaluation metrics of scored samples: samples/exact_match and samples/similarity
    over the samples that have them (a reference), samples/repetition over all; a metric with no
    sample to average is left out."""
    out: dict[str, float] = {}
    rows = list(rows)
    for name in METRICS:
        key = name.split("/", 1)[1]
        vals = [
            float(r[key])
            for r in rows
            if isinstance(r.get(key), int | float) and math.isfinite(r[key])
        ]
        if vals:
            out[name] = sum(vals) / len(vals)
    return out
