"""The built-in decoder SmolLM2-135M: load time (from the GGUF, then from the float32 cache), the forward pass
with every attention weight at 10/128/512 tokens against transformers' LlamaForCausalLM (eager, float32,
output_attentions=True, inference mode) where it is installed, and resident memory with the model loaded."""
from __future__ import annotations

import itertools
import os
import tempfile
import time
from functools import partial

import numpy as np
from common import median_time, write

from attnstudio.core.backend import configure_host_allocator
from attnstudio.core.families import family_of
from attnstudio.engine import Engine
from attnstudio.models import registry
from attnstudio.models.gguf import load_gguf, smollm2_path
from attnstudio.session import Session

# Fewer runs on a loaded machine: BENCH_DECODER_REPEATS=1 BENCH_DECODER_WARMUP=1
REPEATS = int(os.environ.get("BENCH_DECODER_REPEATS", "5"))
WARMUP = int(os.environ.get("BENCH_DECODER_WARMUP", "2"))


def resident_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    configure_host_allocator()  # as the app does (Engine and the CLI call it)
    path = smollm2_path()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ATTNSTUDIO_CACHE_DIR"] = cache
        started = time.perf_counter()
        load_gguf(path, name="smollm2")
        first_load = time.perf_counter() - started
        started = time.perf_counter()
        model = load_gguf(path, name="smollm2")
        cached_load = time.perf_counter() - started
    print(f"load: {first_load:.2f} s from the GGUF (dequantize + cache), {cached_load:.2f} s from the cache")
    try:
        import torch  # noqa: PLC0415 - optional: only the bench venv (make bench) has PyTorch
        from transformers import LlamaForCausalLM  # noqa: PLC0415 - optional: only the bench venv (make bench) has transformers

        hf = LlamaForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    except ImportError:
        torch = hf = None
    forward = family_of(model.parameters).forward
    rows = []
    print(f"{'tokens':>6} {'ours ms':>8} {'HF ms':>8} {'ours/HF':>8}")
    words = "The cat sat on the mat because it was tired and then it slept".split()
    for n in (10, 128, 512):
        ids = np.asarray(model.tokenizer.encode(" ".join(words * (n // len(words) + 1))).ids[:n])
        ours = median_time(partial(forward, model.parameters, ids), repeats=REPEATS, warmup=WARMUP)
        reference = None
        if hf is not None:
            tensor = torch.tensor(ids)[None]
            with torch.inference_mode():
                reference = median_time(partial(hf, tensor, output_attentions=True), repeats=REPEATS, warmup=WARMUP)
        rows.append({"tokens": n, "ours_s": ours, "hf_s": reference,
                     "ours_over_hf": None if reference is None else ours / reference})
        print(f"{n:>6} {ours * 1e3:>8.1f} {'-' if reference is None else f'{reference * 1e3:.1f}':>8} "
              f"{'-' if reference is None else f'{ours / reference:.2f}':>8}")
    del hf
    typing = typing_points(model)
    memory = resident_mib()
    print(f"resident memory with SmolLM2 loaded (after the forward passes): {memory:.0f} MiB")
    write("decoder", {"load_first_s": first_load, "load_cached_s": cached_load, "points": rows,
                      "resident_mib": memory, "typing": typing, "targets": {"ours_over_hf": 0.5, "resident_mib": 1228,
                                                                  "typing_128_s": 0.05, "typing_512_s": 0.1}})


def typing_points(model) -> list[dict]:
    """Typing one character at the end of an n-token text: Engine.compute with the prefix cache, and without.

    The engine (tokenize, mask, forward, next tokens) only: painting the heatmap comes on top.
    """
    registry.load_model_cached.cache_clear()
    engine = Engine()
    rows = []
    words = "The cat sat on the mat because it was tired and then it slept".split()
    for n in (128, 512):
        ids = model.tokenizer.encode(" ".join(words * (n // len(words) + 1))).ids[:n]
        text = model.tokenizer._tokenizer.decode(ids)
        texts = [text + " a", text + " b"]  # each keystroke keeps the first n tokens
        sessions = [Session(text=t, model="smollm2", backend="numpy") for t in texts]
        engine.compute(sessions[1])
        keystrokes = itertools.cycle(sessions)  # alternate the two texts, as typing does
        live = median_time(partial(_compute_next, engine, keystrokes), repeats=REPEATS + 2, warmup=WARMUP)
        reused = engine._prefix.reused
        recompute = median_time(partial(_compute_from_scratch, engine, sessions[0]), repeats=REPEATS, warmup=WARMUP)
        rows.append({"tokens": n, "tokens_reused": reused, "with_prefix_cache_s": live, "full_recompute_s": recompute})
        print(f"typing at {n} tokens: {live * 1e3:.1f} ms with the prefix cache ({reused} tokens reused), "
              f"{recompute * 1e3:.1f} ms recomputing everything")
    return rows


if __name__ == "__main__":
    main()


def _compute_from_scratch(engine, session) -> None:
    """One compute with the prefix cache emptied first."""
    engine._prefix.clear()
    engine.compute(session)


def _compute_next(engine, sessions) -> None:
    """One keystroke: compute the next session of a cycle."""
    engine.compute(next(sessions))
