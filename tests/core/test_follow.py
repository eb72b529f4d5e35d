"""Following a chosen token while the texts change: by its text and its position among equal tokens."""
from __future__ import annotations

from attnstudio.core.follow import matching_position, nearest_occurrence, occurrences


def test_occurrences_ignore_case_and_word_piece_markers():
    assert occurrences(["[CLS]", "Bank", "Ġbank", "##bank", "banks", " bank"], "bank") == [1, 2, 3, 5]
    assert occurrences(["a", "b"], "") == []


def test_nearest_occurrence_keeps_the_position_among_equal_tokens():
    tokens = ["[CLS]", "the", "bank", "by", "the", "bank", "[SEP]"]
    assert nearest_occurrence(tokens, "bank", 5) == 5
    assert nearest_occurrence(["[CLS]", "oh", ","] + tokens[1:], "bank", 5) == 4  # nearest wins: 4, then 7
    assert nearest_occurrence(tokens, "bank", -1) == 2
    assert nearest_occurrence(tokens, "river", 3) is None


def test_matching_position_uses_the_alignment_of_the_two_texts():
    a = ["[CLS]", "the", "bank", "by", "the", "river", "bank", "[SEP]"]
    b = ["[CLS]", "a", "new", "bank", "by", "the", "lake", "bank", "[SEP]"]
    assert matching_position(a, b, 6, "bank") == 7  # A's second bank is B's second bank
    assert matching_position(a, b, 2, "bank") == 3
    assert matching_position(a, b[:6], 6, "bank") == 3  # B typed only so far: its one bank
    assert matching_position(a, ["[CLS]", "we", "had"], 2, "bank") is None
    edited = ["[CLS]", "oh", ","] + a[1:]  # text A edited before the word: the alignment carries the position
    assert matching_position(a, edited, 6, "bank") == 8
