"""The built-in model's forward pass (6 layers, 12 heads, every weight kept) against Hugging Face
transformers' BertModel (eager attention, output_attentions=True, float32) on the same text, and against our
own lower bound: the same matmuls timed bare."""
from __future__ import annotations

from functools import partial

import numpy as np
from common import median_time, write

from attnstudio.core.backend import configure_host_allocator
from attnstudio.core.transformer import encode
from attnstudio.models.loader import load_pretrained


def bare_matmuls(weights, n: int):
    x = np.random.default_rng(0).standard_normal((n, weights.d_model)).astype(np.float32)
    heads, d_head = weights.num_heads, weights.d_model // weights.num_heads
    q = np.random.default_rng(1).standard_normal((heads, n, d_head)).astype(np.float32)
    hidden = np.random.default_rng(2).standard_normal((n, weights.layers[0].intermediate_weight.shape[1]))
    hidden = hidden.astype(np.float32)

    def run():
        for layer in weights.layers:
            x @ layer.qkv_weight
            s = q @ q.transpose(0, 2, 1)
            s @ q
            x @ layer.attention_out_weight
            x @ layer.intermediate_weight
            hidden @ layer.output_weight
    return run


def main() -> None:
    configure_host_allocator()  # as the app does (Engine and the CLI call it)
    model = load_pretrained()
    try:
        import torch  # noqa: PLC0415 - optional: only the bench venv (make bench) has PyTorch
        from transformers import BertModel  # noqa: PLC0415 - optional: only the bench venv (make bench) has transformers

        hf = BertModel.from_pretrained(str(model.folder), attn_implementation="eager").eval()
    except ImportError:
        torch = hf = None
    rows = []
    print(f"{'tokens':>6} {'ours ms':>8} {'HF ms':>8} {'ours/HF':>8} {'bound ms':>9} {'ours/bound':>11}")
    for text in ("The cat sat on the mat because it was tired.", " ".join(["word"] * 126)):
        ids = model.tokenizer.encode(text).ids
        ours = median_time(partial(encode, model.parameters, ids), repeats=15)
        bound = median_time(bare_matmuls(model.parameters, len(ids)), repeats=15)
        reference = None
        if hf is not None:
            tensor = torch.tensor(ids)[None]
            with torch.no_grad():
                reference = median_time(partial(hf, tensor, output_attentions=True), repeats=15)
        row = {"tokens": len(ids), "ours_s": ours, "hf_s": reference, "bound_s": bound,
               "ours_over_hf": None if reference is None else ours / reference, "ours_over_bound": ours / bound}
        rows.append(row)
        print(f"{len(ids):>6} {ours * 1e3:>8.2f} {'-' if reference is None else f'{reference * 1e3:.2f}':>8} "
              f"{'-' if reference is None else f'{ours / reference:.2f}':>8} {bound * 1e3:>9.2f} {ours / bound:>11.2f}")
    write("forward", {"points": rows, "targets": {"ours_over_hf": 0.6, "ours_over_bound": 2.0}})


if __name__ == "__main__":
    main()
