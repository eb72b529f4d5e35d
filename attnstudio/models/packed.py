"""A lossless, smaller copy of a float32 ``model.safetensors``: what the installers carry for the built-in MiniLM.

float32 weights barely compress as they are (zlib keeps 92% of MiniLM's 87 MiB), but split into byte planes
(every value's byte 0, then every byte 1, ...) the plane holding the sign and exponent shrinks to 40% while the
mantissa planes stay near 100%. The packed file is::

    MAGIC  | header length (u64 LE) | safetensors header (JSON, as is)
           | 4 x (plane length (u64 LE) | zlib stream of plane b: byte b of every 4-byte word of the data)

Unpacking gives back the original file byte for byte (zlib checks each stream's Adler-32); the loader reads the
unpacked bytes with safetensors, as it reads the original file.
"""
from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from attnstudio.errors import ModelLoadError

MAGIC = b"attnstudio-packed-safetensors-1\n"
PACKED_SUFFIX = ".packed"  # model.safetensors -> model.safetensors.packed
WORD = 4  # float32: the planes are byte 0..3 of each 4-byte word
# zlib level per plane (little-endian: plane 3 holds the sign and exponent, the others mantissa bits)
LEVELS = (6, 6, 1, 9)


def pack(source: Path, target: Path) -> None:
    """Write the packed form of the safetensors file ``source`` to ``target``."""
    raw = source.read_bytes()
    (header_length,) = struct.unpack_from("<Q", raw)
    header, data = raw[8 : 8 + header_length], raw[8 + header_length :]
    if len(data) % WORD:
        raise ValueError(f"{source}: its data is not a whole number of {WORD}-byte words")
    words = np.frombuffer(data, dtype=np.uint8).reshape(-1, WORD)  # (n_words, 4)
    with target.open("wb") as out:
        out.write(MAGIC + struct.pack("<Q", len(header)) + header)
        for plane, level in enumerate(LEVELS):
            stream = zlib.compress(np.ascontiguousarray(words[:, plane]).tobytes(), level)
            out.write(struct.pack("<Q", len(stream)) + stream)


def unpack(path: Path) -> bytes:
    """The original safetensors file's bytes from its packed form."""
    raw = path.read_bytes()
    try:
        if not raw.startswith(MAGIC):
            raise ValueError("not a packed safetensors file")
        offset = len(MAGIC)
        (header_length,) = struct.unpack_from("<Q", raw, offset)
        header = raw[offset + 8 : offset + 8 + header_length]
        offset += 8 + header_length
        planes = []
        for _ in range(WORD):
            (length,) = struct.unpack_from("<Q", raw, offset)
            planes.append(np.frombuffer(zlib.decompress(raw[offset + 8 : offset + 8 + length]), dtype=np.uint8))
            offset += 8 + length
        if offset != len(raw) or len({plane.size for plane in planes}) != 1:
            raise ValueError("its planes do not add up")
    except (ValueError, struct.error, zlib.error) as error:
        raise ModelLoadError(f"cannot read {path}: it is damaged ({error})") from None
    words = np.empty((planes[0].size, WORD), dtype=np.uint8)  # (n_words, 4)
    for plane, values in enumerate(planes):
        words[:, plane] = values
    return b"".join((struct.pack("<Q", len(header)), header, memoryview(words).cast("B")))  # one copy


def main(argv: list[str]) -> int:
    """Command line of packaging/build.sh, ``main([SOURCE.safetensors])``: writes SOURCE.safetensors.packed, checks it
    unpacks to the same bytes, and removes the source."""
    if len(argv) != 1:
        print("usage: packed.main([MODEL.safetensors])", file=sys.stderr)
        return 2
    source = Path(argv[0])
    target = source.with_name(source.name + PACKED_SUFFIX)
    pack(source, target)
    if unpack(target) != source.read_bytes():
        target.unlink()
        print(f"packed: {target} does not unpack to {source}", file=sys.stderr)
        return 1
    print(f"packed {source} ({source.stat().st_size / 2**20:.1f} MiB) -> {target} "
          f"({target.stat().st_size / 2**20:.1f} MiB), unpacks byte for byte")
    source.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
