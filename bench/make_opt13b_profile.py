#!/usr/bin/env python3
"""Writes bench/profiles/opt13b_a100.json: a cost model of OPT-13B fp16 on one A100-40GB (SXM).

A roofline from published figures (see docs/SCHEDULING.md, "The OPT-13B cost model"):
  - OPT-13B: 12.85e9 parameters (25.7 GB fp16), 40 layers, hidden 5120 -> KV 2*40*5120*2 B = 819,200 B/token.
  - A100-40GB: 1,555 GB/s HBM2, 312 TFLOP/s dense fp16 (NVIDIA A100 datasheet); PCIe 4.0 x16 host link.
  - Achieved fractions typical of FasterTransformer/vLLM kernels: 85% of HBM bandwidth in decode GEMVs,
    60% of peak FLOP/s in prefill GEMMs, 25 GB/s for batched pinned host<->device copies.
  - vLLM paper (Kwon et al., SOSP'23, section 2.3 / figure 1): OPT-13B on an A100-40GB leaves ~30% of
    memory (~12 GB) for the KV cache.
Standard library only; `python3 bench/make_opt13b_profile.py` regenerates the file.
"""
import json
import pathlib

PARAMS = 12.85e9
WEIGHT_BYTES = 2 * PARAMS
LAYERS, HIDDEN = 40, 5120
KV_BYTES_PER_TOKEN = 2 * LAYERS * HIDDEN * 2
HBM_BYTES_PER_S = 1.555e12 * 0.85
FLOPS = 312e12 * 0.60
OVERHEAD_S = 0.002  # kernel launches, sampling, scheduling per iteration


def prefill_s(n):
    gemm = max(WEIGHT_BYTES / HBM_BYTES_PER_S, 2 * PARAMS * n / FLOPS)
    attention = 4 * n * n * HIDDEN * LAYERS / FLOPS  # QK^T and PV, causal halves it, x2 flops
    return OVERHEAD_S + gemm + attention / 2


def decode_s(batch, context_tokens):
    weights = WEIGHT_BYTES / HBM_BYTES_PER_S
    kv = context_tokens * KV_BYTES_PER_TOKEN / HBM_BYTES_PER_S
    compute = 2 * PARAMS * batch / FLOPS
    return OVERHEAD_S + weights + kv + compute


def main():
    prefill = [[n, round(prefill_s(n), 6)] for n in (1, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048)]
    decode = []
    for b in (1, 2, 4, 8, 16, 32):
        for per_job in (64, 256, 512, 1024, 2048):
            decode.append([b, b * per_job, round(decode_s(b, b * per_job), 6)])
    profile = {
        "name": "opt-13b fp16, 1x A100-40GB (roofline from published figures)",
        "source": "bench/make_opt13b_profile.py; docs/SCHEDULING.md 'The OPT-13B cost model'",
        "block_size_tokens": 16,
        "kv_bytes_per_token": KV_BYTES_PER_TOKEN,
        "prefill": prefill,
        "decode": decode,
        "swap_bandwidth_bytes_per_s": 25e9,
        "device_kv_bytes": 12e9,
        "host_kv_bytes": 64e9,
    }
    out = pathlib.Path(__file__).resolve().parent / "profiles" / "opt13b_a100.json"
    out.write_text(json.dumps(profile, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
