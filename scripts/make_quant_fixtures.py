#!/usr/bin/env python3
"""Writes dequantization fixtures for the CPU kernels to tests/fixtures/quant/.

For each weight type: <name>.bin holds the raw ggml blocks of a [rows, cols] matrix and <name>.f32
the float32 values gguf-py's `gguf.quants.dequantize` gives for them (the ground truth).
manifest.txt lists "<name> <ggml type id> <rows> <cols>" per line.

F16/BF16/Q8_0/Q4_0/Q4_1 come from `gguf.quants.quantize` of random rows; gguf-py cannot quantize
Q4_K/Q6_K, so those are random valid block bytes (small f16 scales, random nibbles) that gguf-py
dequantizes. Run with the repo venv: .venv/bin/python scripts/make_quant_fixtures.py (gguf==0.19.0).
"""
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

ROWS, COLS = 6, 512
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "quant"


def f16_bytes(rng, n, lo, hi):
    return rng.uniform(lo, hi, size=n).astype(np.float16).view(np.uint8).reshape(n, 2)


def random_q4_k(rng, nblocks):
    # block: d (f16), dmin (f16), scales[12], qs[128]  -> 144 bytes
    d = f16_bytes(rng, nblocks, 0.0, 0.01)
    dmin = f16_bytes(rng, nblocks, 0.0, 0.01)
    rest = rng.integers(0, 256, size=(nblocks, 12 + 128), dtype=np.uint8)
    return np.concatenate([d, dmin, rest], axis=1)


def random_q6_k(rng, nblocks):
    # block: ql[128], qh[64], scales[16] (int8), d (f16) -> 210 bytes
    q = rng.integers(0, 256, size=(nblocks, 128 + 64), dtype=np.uint8)
    scales = rng.integers(-128, 128, size=(nblocks, 16)).astype(np.int8).view(np.uint8)
    d = f16_bytes(rng, nblocks, -0.002, 0.002)
    return np.concatenate([q, scales, d], axis=1)


def main():
    rng = np.random.default_rng(1234)
    OUT.mkdir(parents=True, exist_ok=True)
    lines = []
    for qtype in (T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q4_K, T.Q6_K):
        block_size, block_bytes = quants.GGML_QUANT_SIZES[qtype]
        if qtype in (T.Q4_K, T.Q6_K):
            nblocks = ROWS * COLS // block_size
            make = random_q4_k if qtype == T.Q4_K else random_q6_k
            raw = make(rng, nblocks).reshape(ROWS, COLS // block_size * block_bytes)
        else:
            x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
            x[0, :7] = [0.0, -0.0, 1e-8, -65504.0, 3.5, -1e-3, 0.0]  # edge values in one block
            x[1, :32] = 0.0  # an all-zero block (d = 0)
            raw = quants.quantize(x, qtype)
        raw = np.ascontiguousarray(raw)
        if raw.dtype != np.uint8:  # F16 comes back as float16, BF16 as uint16
            raw = raw.view(np.uint8)
        assert raw.shape == (ROWS, COLS // block_size * block_bytes), raw.shape
        expected = quants.dequantize(raw, qtype).astype(np.float32)
        assert expected.shape == (ROWS, COLS)
        name = qtype.name.lower()
        (OUT / f"{name}.bin").write_bytes(raw.tobytes())
        (OUT / f"{name}.f32").write_bytes(expected.tobytes())
        lines.append(f"{name} {int(qtype)} {ROWS} {COLS}")
    (OUT / "manifest.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
