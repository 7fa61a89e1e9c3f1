"""The samples view helpers: the word diff between neighbouring answers and the scores line."""

from __future__ import annotations

from tuitrain.samples.view import changed_spans, score_parts, scores_text
from tuitrain.store import Sample


def _marked(before: str | None, after: str) -> list[str]:
    return [after[a:b] for a, b in changed_spans(before, after)]


def test_changed_words_are_marked_and_neighbours_join():
    before = "It serialises a Python object to a JSON string."
    after = "Return turn a a a a the object to a JSON string."
    assert _marked(before, after) == ["Return turn", "a a a the"]
    assert _marked(after, after) == []
    assert _marked(None, after) == []  # no neighbour: nothing to compare with
    # Whitespace only (a re-wrapped answer) is no change; a new last word is.
    assert _marked("a  b\nc", "a b c") == []
    assert _marked("a b", "a b c") == ["c"]


def test_scores_line_shows_what_the_sample_has_in_percent():
    s = Sample(1, "r", 50, "val:0", "val", "q?", "out", exact_match=0.0, similarity=0.371,
               repetition=0.54)  # fmt: skip
    assert score_parts(s) == ["✗ exact", "sim 37%", "rep 54%"]
    no_ref = Sample(2, "r", 50, "prompt:0", "prompt", "q?", "out", repetition=0.0)
    assert scores_text(no_ref) == "rep 0%"
    exact = Sample(3, "r", 50, "val:0", "val", "q?", "out", exact_match=1.0, similarity=1.0)
    assert scores_text(exact, " ") == "✓ exact sim 100%"
