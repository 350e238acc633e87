#!/usr/bin/env python3
"""Writes the seed corpora of the file fuzzers from real files, cut down to a few KB:
  tests/fuzz/corpus/gguf_fuzz/         the test GGUFs (tiny-llama, the default SmolLM2 Q4_1 model and
                                       two tokenizer vocabularies) with
                                       every metadata key kept, arrays cut to their first entries
                                       (merges kept consistent with the kept vocabulary) and the
                                       first few tensors shrunk to one small row of their real bytes
  tests/fuzz/corpus/safetensors_fuzz/  the test safetensors files the same way (real header fields,
                                       shrunk shapes, real bytes, __metadata__ kept)
  tests/fuzz/corpus/tokenizer_json_fuzz/  the test tokenizer.json files with every section kept, the
                                       vocabulary cut to its first 300 ids and the merges and added
                                       tokens to those within it
Plain Python, no dependencies:  python3 scripts/make_fuzz_seeds.py
"""
import gzip
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")

# ggml type id -> (block elements, block bytes)
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
               8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
               14: (256, 210), 15: (256, 292), 30: (1, 2)}
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
          11: "<q", 12: "<d"}


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.take(SCALAR[t])


def wstring(b):
    return struct.pack("<Q", len(b)) + b


def wvalue(t, v):
    if t == 8:
        return wstring(v)
    if t == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(wvalue(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def cut_gguf(src, dst, num_vocab, num_tensors):
    data = open(src, "rb").read()
    r = Reader(data)
    magic, version, n_tensors, n_kv = r.take("<I"), r.take("<I"), r.take("<Q"), r.take("<Q")
    kvs = []
    for _ in range(n_kv):
        key = r.string()
        t = r.take("<I")
        kvs.append((key, t, r.value(t)))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        infos.append((name, ne, r.take("<I"), r.take("<Q")))
    align = next((v for k, t, v in kvs if k == b"general.alignment"), 32)
    data_start = (r.p + align - 1) // align * align

    vocab = None
    out_kvs = []
    for key, t, v in kvs:
        if t == 9:
            et, items = v
            if key == b"tokenizer.ggml.tokens":
                vocab = set(items[:num_vocab])
            if key == b"tokenizer.ggml.merges":
                continue  # after the vocabulary is known
            v = (et, items[:num_vocab])
        out_kvs.append((key, t, v))
    for key, t, v in kvs:
        if key == b"tokenizer.ggml.merges":
            kept = [m for m in v[1] if all(p in vocab for p in m.split(b" ", 1)) and
                    m.replace(b" ", b"", 1) in vocab][:num_vocab]
            out_kvs.append((key, t, (v[0], kept)))
    for i, (key, t, v) in enumerate(out_kvs):  # ids that must stay inside the cut vocabulary
        if key.endswith(b"_token_id") and isinstance(v, int) and v >= num_vocab:
            out_kvs[i] = (key, t, 0)

    tensors, blob = [], b""
    for name, ne, ttype, off in infos[:num_tensors]:
        block, block_bytes = GGML_BLOCKS[ttype]
        row = max(block, 8 if block == 1 else block)
        nbytes = row // block * block_bytes
        new_ne = [row] + [1] * (len(ne) - 1)
        pad = (-len(blob)) % align
        blob += b"\0" * pad
        tensors.append((name, new_ne, ttype, len(blob)))
        blob += data[data_start + off:data_start + off + nbytes]
    head = struct.pack("<IIQQ", magic, version, len(tensors), len(out_kvs))
    head += b"".join(wstring(k) + struct.pack("<I", t) + wvalue(t, v) for k, t, v in out_kvs)
    for name, ne, ttype, off in tensors:
        head += wstring(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        head += struct.pack("<IQ", ttype, off)
    head += b"\0" * ((-len(head)) % align)
    open(dst, "wb").write(head + blob)
    return len(head + blob)


ST_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def cut_safetensors(src, dst, num_tensors):
    data = open(src, "rb").read()
    n = struct.unpack_from("<Q", data, 0)[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out, blob = {}, b""
    if "__metadata__" in header:
        out["__metadata__"] = header["__metadata__"]
    names = sorted(k for k in header if k != "__metadata__")[:num_tensors]
    for name in names:
        e = header[name]
        shape = [min(d, 4) for d in e["shape"]]
        count = 1
        for d in shape:
            count *= d
        nbytes = count * ST_BYTES[e["dtype"]]
        begin = e["data_offsets"][0]
        out[name] = {"dtype": e["dtype"], "shape": shape,
                     "data_offsets": [len(blob), len(blob) + nbytes]}
        blob += body[begin:begin + nbytes]
    h = json.dumps(out, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(h)) + h + blob)
    return 8 + len(h) + len(blob)


def cut_tokenizer_json(src, dst, num_vocab):
    j = json.load(gzip.open(src))
    model = j["model"]
    kept = {k: v for k, v in model["vocab"].items() if v < num_vocab}
    model["vocab"] = kept
    merges = []
    for m in model.get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in kept and b in kept and a + b in kept:
            merges.append(m)
    model["merges"] = merges[:num_vocab]
    j["added_tokens"] = [t for t in j.get("added_tokens", []) if t["id"] < num_vocab][:20]
    data = json.dumps(j, ensure_ascii=False, separators=(",", ":")).encode()
    open(dst, "wb").write(data)
    return len(data)


def main():
    gguf_out = os.path.join(OUT, "gguf_fuzz")
    st_out = os.path.join(OUT, "safetensors_fuzz")
    os.makedirs(gguf_out, exist_ok=True)
    os.makedirs(st_out, exist_ok=True)
    for src, name, vocab in [("models/tiny-llama.gguf", "tiny-llama", 64),
                             ("tokenizer/smollm2-vocab.gguf", "smollm2-vocab", 300),
                             ("tokenizer/ggml-vocab-llama-spm.gguf", "llama-spm-vocab", 300),
                             ("../../models/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-q4_1", 300)]:
        if not os.path.exists(os.path.join(FIX, src)):
            continue
        size = cut_gguf(os.path.join(FIX, src), os.path.join(gguf_out, name), vocab, 4)
        print(f"{name}: {size} bytes")
    for src, name in [("models/tiny-llama/model.safetensors", "tiny-llama"),
                      ("models/tiny-opt/model.safetensors", "tiny-opt-f16"),
                      ("models/tiny-llama3-bf16-sharded/model-00003-of-00003.safetensors",
                       "tiny-llama3-bf16-shard")]:
        size = cut_safetensors(os.path.join(FIX, src), os.path.join(st_out, name), 4)
        print(f"{name}: {size} bytes")
    tj_out = os.path.join(OUT, "tokenizer_json_fuzz")
    os.makedirs(tj_out, exist_ok=True)
    for name in ["smollm2", "llama-spm", "nfc-bpe"]:
        size = cut_tokenizer_json(os.path.join(FIX, "tokenizer", name + ".tokenizer.json.gz"),
                                  os.path.join(tj_out, name), 300)
        print(f"{name}.tokenizer.json: {size} bytes")


if __name__ == "__main__":
    main()
