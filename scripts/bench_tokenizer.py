#!/usr/bin/env python3
"""Encode throughput, single thread, FastServe vs HF `tokenizers`, on the tokenizer test corpus.

  /tmp/refvenv/bin/python scripts/bench_tokenizer.py [--fastserve build-tok/fastserve] [--rounds 5]

Both encode the corpus strings one at a time (HF: Tokenizer.encode per string, and encode_batch
over the whole corpus with RAYON_NUM_THREADS=1; FastServe:
`fastserve tokenize --jsonl F --bench N`), best of N rounds; both keep their word caches warm across
rounds. Prints a Markdown table for docs/BENCHMARKS.md.
"""
import argparse, gzip, json, os, subprocess, sys, tempfile, time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "tokenizer")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fastserve", default=os.path.join(ROOT, "build-tok", "fastserve"))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from tokenizers import Tokenizer
    texts = [json.loads(l)["t"] for l in gzip.open(os.path.join(FIX, "corpus.jsonl.gz"), "rt")]
    nbytes = sum(len(t.encode()) for t in texts)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")
        jsonl = f.name
    rows = []
    for name, hf_json, model in (
        ("SmolLM2 (byte-level BPE)", "smollm2.tokenizer.json.gz", "smollm2-vocab.gguf"),
        ("Llama SPM (SentencePiece BPE)", "llama-spm.tokenizer.json.gz", "ggml-vocab-llama-spm.gguf"),
    ):
        tok = Tokenizer.from_str(gzip.open(os.path.join(FIX, hf_json), "rt").read())
        best = 1e30
        for _ in range(args.rounds):
            start = time.perf_counter()
            for t in texts:
                tok.encode(t)
            best = min(best, time.perf_counter() - start)
        hf = nbytes / best / 1e6
        best_batch = 1e30  # one call for the whole corpus: no per-call Python overhead
        for _ in range(args.rounds):
            start = time.perf_counter()
            tok.encode_batch(texts)
            best_batch = min(best_batch, time.perf_counter() - start)
        hf_batch = nbytes / best_batch / 1e6
        out = subprocess.run([args.fastserve, "tokenize", "--model", os.path.join(FIX, model), "--jsonl",
                              jsonl, "--bench", str(args.rounds)], check=True, capture_output=True, text=True)
        ours = json.loads(out.stdout)["mb_per_s"]
        rows.append((name, ours, hf, hf_batch))
    os.unlink(jsonl)
    print(f"corpus: {len(texts)} strings, {nbytes / 1e6:.2f} MB, best of {args.rounds} rounds, single thread\n")
    print("| tokenizer | FastServe MB/s | HF encode MB/s | HF encode_batch (1 thread) MB/s | vs encode | vs encode_batch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ours, hf, hf_batch in rows:
        print(f"| {name} | {ours:.2f} | {hf:.2f} | {hf_batch:.2f} | {ours / hf:.2f}x | {ours / hf_batch:.2f}x |")


if __name__ == "__main__":
    main()
