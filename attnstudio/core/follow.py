"""Keeping a chosen token chosen while the texts change: by its text, and by its position among equal tokens.

The Compare view follows one word of text A into text B. While either text is being typed the token
lists change under it; the choice must stay on the same word (the second "bank" stays the second
"bank"), and a word B does not have yet must not make the view jump to another word.
"""
from __future__ import annotations

import numpy as np

from attnstudio.core.analysis import align_tokens, bare_token


def occurrences(tokens: list[str], word: str) -> list[int]:
    """Positions of the tokens that spell ``word`` (case-insensitive, word-piece markers ignored)."""
    wanted = word.strip().casefold()
    return [index for index, token in enumerate(tokens) if wanted and bare_token(token).casefold() == wanted]


def nearest_occurrence(tokens: list[str], word: str, position: int) -> int | None:
    """The token spelling ``word`` at ``position``, else the one nearest it (the earlier on a tie); None if none.

    position < 0: the first occurrence.
    """
    found = occurrences(tokens, word)
    if not found:
        return None
    if position < 0:
        return found[0]
    return min(found, key=lambda index: (abs(index - position), index))


def matching_position(tokens_a: list[str], tokens_b: list[str], index_a: int, word: str) -> int | None:
    """Where A's token ``index_a`` (spelling ``word``) is in B: the aligned token when it spells the word,
    else B's occurrence of the word nearest the aligned place (or the same position); None if B lacks it."""
    aligned_a, aligned_b = align_tokens(tokens_a, tokens_b)
    hit = np.flatnonzero(aligned_a == index_a)
    if hit.size:
        guess = int(aligned_b[hit[0]])
    else:  # not aligned: the place of the nearest aligned token before it, shifted by the distance
        before = np.flatnonzero(aligned_a < index_a)
        guess = int(aligned_b[before[-1]] + index_a - aligned_a[before[-1]]) if before.size else index_a
    return nearest_occurrence(tokens_b, word, guess)
