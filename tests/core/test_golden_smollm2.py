"""The Llama forward pass on the built-in SmolLM2-135M GGUF against transformers' LlamaForCausalLM.

../shared/golden/smollm2 holds transformers' tensors (eager attention, float32, the same GGUF
dequantized): token ids, every attention weight, hidden states and the last position's logits.
"""
from __future__ import annotations

import numpy as np
import pytest

from attnstudio.core.backend import cupy_status
from attnstudio.core.families import family_of
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting
from attnstudio.session import Session
from tests.conftest import SMOLLM2_GOLDEN_DIR
from tests.core.test_cli import run_cli

NAMES = ["cat", "bank_account", "river_bank", "unicode", "paragraph", "chat"]
GPU_USABLE, GPU_REASON = cupy_status()


def golden(name: str):
    return np.load(SMOLLM2_GOLDEN_DIR / f"{name}.npz", allow_pickle=False)


@pytest.mark.parametrize("name", NAMES)
def test_tokens_and_ids_match(name, smollm2_index, smollm2):
    tokenized = smollm2.tokenizer.encode(smollm2_index[name]["text"])
    assert smollm2.tokenizer.raw_tokens(tokenized.ids) == smollm2_index[name]["tokens"]
    np.testing.assert_array_equal(tokenized.ids, golden(name)["input_ids"].reshape(-1))
    # What the views label: each token's own text, line breaks and tabs made visible.
    readable = "".join(tokenized.tokens).replace("↵", "\n").replace("⇥", "\t")
    if name != "unicode":  # there some tokens are parts of one UTF-8 character and keep their byte spelling
        assert readable == smollm2_index[name]["text"]


def test_tokens_read_as_the_text_they_stand_for(smollm2):
    tokenizer = smollm2.tokenizer
    assert tokenizer.encode("The cat\n\tsat").tokens == ["The", " cat", "↵", "⇥", "sat"]
    assert tokenizer.encode("<|im_start|>user café").tokens == ["<|im_start|>", "user", " café"]
    assert tokenizer.encode("東").tokens == ["æĿ", "±"]  # halves of one character keep their byte-level spelling


@pytest.mark.parametrize("name", NAMES)
def test_attentions_hidden_states_and_next_token_match_transformers(name, smollm2_index, smollm2):
    reference = golden(name)
    result = family_of(smollm2.parameters).forward(smollm2.parameters, reference["input_ids"].reshape(-1))
    attentions = result.attentions()
    assert attentions.shape == reference["attentions"].shape  # (30, 9, n, n)
    assert np.abs(attentions - reference["attentions"]).max() <= 1e-5
    # Hidden states reach ~2e4 in the middle layers (massive activations): compare relative to each layer's scale.
    hidden = np.stack(result.hidden_states)
    scale = np.abs(reference["hidden_states"]).max(axis=(1, 2), keepdims=True)
    assert (np.abs(hidden - reference["hidden_states"]) / scale).max() <= 1e-5
    assert np.abs(result.next_logits - reference["last_logits"]).max() <= 1e-4
    top5 = np.argsort(-result.next_logits)[:5]
    assert [smollm2.tokenizer.decode_token(i) for i in top5] == smollm2_index[name]["next_top5"]
    assert top5[0] == int(np.asarray(reference["argmax_next"]).reshape(-1)[-1])


def test_engine_runs_the_decoder_with_its_own_causal_mask(smollm2_index):
    text = smollm2_index["cat"]["text"]
    result = Engine().compute(Session(text=text, model="smollm2", backend="numpy"))
    reference = golden("cat")
    assert result.query_tokens == [token.replace("Ġ", " ") for token in smollm2_index["cat"]["tokens"]]
    assert (result.heads, result.d_k, result.num_layers) == (9, 64, 30)
    assert np.abs(result.attentions() - reference["attentions"]).max() <= 1e-5
    n = len(result.query_tokens)
    np.testing.assert_array_equal(result.mask, np.tril(np.ones((n, n), dtype=bool)))
    assert np.abs(result.forward.next_logits - reference["last_logits"]).max() <= 1e-4


def test_cli_writes_chosen_layers_and_next_logits(tmp_path, smollm2_index):
    out = tmp_path / "cat.npz"
    done = run_cli("compute", smollm2_index["cat"]["text"], "--model", "smollm2", "--layers", "1,15,30",
                   "--backend", "numpy", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "11x11 tokens, 3 layer(s) x 9 head(s)" in done.stdout
    data = np.load(out, allow_pickle=False)
    reference = golden("cat")
    assert list(data["tokens"]) == [token.replace("Ġ", " ") for token in smollm2_index["cat"]["tokens"]]
    assert data["attentions"].dtype == np.float32 and data["attentions"].shape == (3, 9, 11, 11)
    assert np.abs(data["attentions"] - reference["attentions"][[0, 14, 29]]).max() <= 1e-5
    assert data["next_logits"].dtype == np.float32 and data["next_logits"].shape == (49152,)
    assert np.abs(data["next_logits"] - reference["last_logits"]).max() <= 1e-4


def test_cli_refuses_layers_out_of_range_in_one_line(tmp_path):
    done = run_cli("compute", "The cat sat.", "--model", "smollm2", "--layers", "0,31", "-o", str(tmp_path / "x.npz"))
    assert done.returncode == 2 and "--layers must be from 1 to 30" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("changes, message", [
    ({"pair_text": "a second text"}, "cross-attention needs an encoder"),
    ({"heads": 3}, "cannot be re-split"),
])
def test_engine_refuses_what_a_decoder_cannot_do(changes, message, smollm2):
    with pytest.raises(InvalidSetting, match=message):
        Engine().compute(Session(text="The cat sat.", model="smollm2", backend="numpy", **changes))


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_USABLE, reason=f"no CUDA GPU here: {GPU_REASON}")
@pytest.mark.parametrize("name", ["cat", "paragraph"])
def test_cupy_decoder_matches_transformers(name, smollm2_index):
    reference = golden(name)
    result = Engine().compute(Session(text=smollm2_index[name]["text"], model="smollm2", backend="cupy"))
    assert type(result.forward.traces[0].weights).__module__.startswith("cupy"), "data stays on the device"
    assert np.abs(result.attentions() - reference["attentions"]).max() <= 1e-5
    assert np.abs(result.forward.next_logits.get() - reference["last_logits"]).max() <= 1e-4
