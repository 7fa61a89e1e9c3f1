"""Provides what a reader of samples needs beside the grid: the words of an answer that changed
since its neighbour (a word-level diff) and the one-line form of a sample's scores."""

from __future__ import annotations

import difflib
import re

from tuitrain.store import Sample

_WORDS = re.compile(r"\s+|\S+")


def changed_spans(before: str | None, after: str) -> list[tuple[int, int]]:
    """Character spans of `after` that hold words not in `before` at that place (inserted or
    replaced, by difflib on words; whitespace kept apart so a re-wrapped answer is unchanged).
    None for `before` (no neighbour): nothing is marked."""
    if before is None:
        return []
    a = [m.group() for m in _WORDS.finditer(before) if not m.group().isspace()]
    tokens = [(m.start(), m.end(), m.group()) for m in _WORDS.finditer(after)]
    words = [t for t in tokens if not t[2].isspace()]
    matcher = difflib.SequenceMatcher(None, a, [w[2] for w in words], autojunk=False)
    spans: list[tuple[int, int]] = []
    for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "insert") and j2 > j1:
            start, end = words[j1][0], words[j2 - 1][1]
            if spans and spans[-1][1] >= start - 1 and after[spans[-1][1] : start].isspace():
                spans[-1] = (spans[-1][0], end)  # neighbouring changed words: one span
            else:
                spans.append((start, end))
    return spans


def score_parts(sample: Sample) -> list[str]:
    """`["✓ exact", "sim 87%", "rep 5%"]`: the scores a sample has (exact and sim need a
    reference). Similarity and repetition are stored in 0..1 (tuitrain.samples.scores) and shown
    in percent."""
    parts = []
    if sample.exact_match is not None:
        parts.append(("✓" if sample.exact_match >= 1.0 else "✗") + " exact")
    if sample.similarity is not None:
        parts.append(f"sim {100 * sample.similarity:.0f}%")
    if sample.repetition is not None:
        parts.append(f"rep {100 * sample.repetition:.0f}%")
    return parts


def scores_text(sample: Sample, sep: str = "  ") -> str:
    """The scores on one line: `✓ exact  sim 87%  rep 5%`."""
    return sep.join(score_parts(sample))
