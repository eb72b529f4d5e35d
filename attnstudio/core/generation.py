"""Generating with a decoder, one token at a time: greedy, or sampling under a temperature with a seed.

Each step runs the model on the ids so far (the prefix cache computes only the new row, exactly), turns the
last position's logits into a choice and appends it. Generation works on token ids, not on the text: a decoded
text tokenized again could merge differently, and the chain would no longer be the model's own.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from attnstudio.core.backend import array_namespace, to_numpy
from attnstudio.core.prefix_cache import PrefixCache
from attnstudio.errors import InvalidSetting

MAX_STEPS = 500
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 5.0


@dataclass(frozen=True)
class GenerationSettings:
    steps: int
    greedy: bool = True  # True: the most likely token each step; False: a draw from softmax(logits / temperature)
    temperature: float = 1.0
    seed: int = 0  # the sampling generator's seed: the same seed gives the same tokens

    def validate(self) -> GenerationSettings:
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InvalidSetting(f"generate between 1 and {MAX_STEPS} tokens, not {self.steps}")
        if not MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE:
            raise InvalidSetting(f"the sampling temperature must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE}")
        return self


def sampling_probabilities(logits, temperature: float) -> np.ndarray:
    """softmax(logits / temperature) in float64.  (vocab,) -> (vocab,), summing to 1."""
    scaled = np.asarray(to_numpy(logits), dtype=np.float64) / temperature
    weights = np.exp(scaled - scaled.max())
    return weights / weights.sum()


def choose_token(logits, settings: GenerationSettings, rng: np.random.Generator) -> int:
    """The next token: argmax of ``logits`` (vocab,) when greedy, else one draw from the tempered softmax."""
    if settings.greedy:
        return int(np.argmax(to_numpy(logits)))
    probabilities = sampling_probabilities(logits, settings.temperature)
    return int(rng.choice(probabilities.shape[0], p=probabilities))


def generate(family, parameters, ids, settings: GenerationSettings, *, options: dict | None = None,
             mask_for: Callable[[int], np.ndarray | None] | None = None, ablation=None,
             should_stop: Callable[[], bool] = lambda: False,
             on_token: Callable[[int, int], None] = lambda step, token: None) -> tuple[list[int], str]:
    """Append up to ``settings.steps`` tokens to ``ids`` (n,).  -> (the new ids, why it ended).

    options: the attention options every forward pass takes (score, scale, seed); mask_for(n): the user's
    (n, n) mask for n tokens (None: only the model's own causal mask); ablation: heads switched off (then
    each step is a full pass: the prefix cache runs unablated models only). on_token(step, id) after each
    step; should_stop() is asked before each one. Families without a prefix-cache ``extend`` (GPT-2) run
    each step in full.
    """
    settings.validate()
    options = dict(options or {})
    xp = array_namespace(parameters.token_embeddings)
    cache, rng = PrefixCache(), np.random.default_rng(settings.seed)
    ids, new = [int(i) for i in to_numpy(ids)], []
    limit = parameters.max_positions
    for step in range(settings.steps):
        if should_stop():
            return new, "stopped"
        if len(ids) >= limit:
            return new, f"the model's context of {limit} tokens is full"
        mask_host = None if mask_for is None else mask_for(len(ids))
        mask = None if mask_host is None else xp.asarray(mask_host)
        ids_host = np.asarray(ids, dtype=np.int64)
        if ablation:
            result = family.forward(parameters, xp.asarray(ids_host), mask=mask, ablation=ablation, **options)
        else:
            result = cache.forward(family, parameters, ids_host, xp.asarray(ids_host), mask_host=mask_host,
                                   mask=mask, **options)
        token = choose_token(result.next_logits, settings, rng)
        ids.append(token)
        new.append(token)
        on_token(step, token)
    return new, "done"
