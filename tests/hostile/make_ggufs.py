"""Writes the hostile GGUF files of tests/hostile/gguf (a tiny random Llama, broken one way per file).

Run ``python tests/hostile/make_ggufs.py`` after changing a recipe; the files are committed so the corpus is
plain files. ``good.gguf`` loads and computes; every other file breaks one thing.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import gguf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.core.tiny_gguf import write_tiny_llama  # noqa: E402 - the script runs from anywhere

HERE = Path(__file__).resolve().parent / "gguf"
GGUF_MAGIC = b"GGUF"


def without_tensor(path: Path, missing: str) -> None:
    """Rewrite the good file with one tensor left out (its metadata kept)."""
    reader = gguf.GGUFReader(str(HERE / "good.gguf"))
    writer = gguf.GGUFWriter(str(path), "llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value = field.contents()
        writer.add_key_value(field.name, value, field.types[0],
                             sub_type=field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None)
    for tensor in reader.tensors:
        if tensor.name != missing:
            writer.add_tensor(tensor.name, tensor.data.reshape(tuple(reversed(tensor.shape.tolist()))))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    HERE.mkdir(exist_ok=True)
    write_tiny_llama(HERE / "good.gguf")
    write_tiny_llama(HERE / "unknown_architecture.gguf", architecture="mamba")
    good = (HERE / "good.gguf").read_bytes()
    (HERE / "truncated_in_tensors.gguf").write_bytes(good[: len(good) * 2 // 3])
    (HERE / "truncated_in_metadata.gguf").write_bytes(good[:200])
    (HERE / "empty.gguf").write_bytes(b"")
    (HERE / "text_file.gguf").write_text("This is a text file, not a model.\n")
    # magic, version 3, then 2**62 tensors and 2**62 metadata pairs
    (HERE / "counts_huge.gguf").write_bytes(GGUF_MAGIC + struct.pack("<IQQ", 3, 1 << 62, 1 << 62) + bytes(64))
    (HERE / "version_99.gguf").write_bytes(GGUF_MAGIC + struct.pack("<I", 99) + good[8:])
    without_tensor(HERE / "tensor_missing.gguf", "blk.1.attn_k.weight")


if __name__ == "__main__":
    main()
