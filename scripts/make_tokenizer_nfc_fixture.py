#!/usr/bin/env python3
"""Builds a Qwen2-style tokenizer fixture and HF's ids for it (run with /tmp/refvenv/bin/python).

The tokenizer is trained here with the `tokenizers` library (vocab 4000) and has what Qwen2's
tokenizer.json has and SmolLM2's lacks: an NFC normalizer and Qwen2's pre-tokenizer regex (Split,
Isolated) before ByteLevel. Its added tokens cover every AddedToken flag: special tokens, a
single_word token, lstrip, rstrip and both.
Inputs: tests/fixtures/tokenizer/corpus.jsonl.gz (the strings; built by make_tokenizer_fixtures.py).
Outputs (tests/fixtures/tokenizer/):
  nfc-bpe.tokenizer.json.gz  the tokenizer
  nfc-bpe.corpus.jsonl.gz    {"t": text, "c": HF ids, "cd": HF decode when it differs from the text}
                             for every corpus string, its NFD form where that differs, and strings
                             that put the added tokens in every context.
"""
import gzip, json, os, random, unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
ADDED = [  # content, special, single_word, lstrip, rstrip
    ("<|endoftext|>", True, False, False, False),
    ("<|im_start|>", True, False, False, False),
    ("<|im_end|>", True, False, False, False),
    ("<word>", False, True, False, False),
    ("<ls>", True, False, True, False),
    ("<rs>", True, False, False, True),
    ("<both>", False, False, True, True),
    ("[[sw]]", True, True, True, True),
]


def main():
    texts = []
    with gzip.open(os.path.join(OUT, "corpus.jsonl.gz"), "rt") as f:
        for line in f:
            texts.append(json.loads(line)["t"])
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts[:4000], trainer=trainer)
    tok.add_tokens([AddedToken(c, special=s, single_word=w, lstrip=l, rstrip=r, normalized=False)
                    for c, s, w, l, r in ADDED])

    rng = random.Random(7)
    inputs = list(texts)
    inputs += [unicodedata.normalize("NFD", t) for t in texts if unicodedata.normalize("NFD", t) != t]
    contexts = ["", " ", "  ", "\t", "\n", "a", "x1", "_", ".", "é", "日本", "\u00a0", "\u3000", " \n ", "9"]
    for c, *_ in ADDED:
        for left in contexts:
            for right in contexts:
                inputs.append(left + c + right)
                inputs.append("word " + left + c + right + " end")
    for _ in range(300):
        parts = [rng.choice(texts)[: rng.randint(0, 40)] for _ in range(3)]
        inputs.append(rng.choice(contexts).join([parts[0], rng.choice(ADDED)[0], parts[1],
                                                 rng.choice(ADDED)[0] + rng.choice(contexts), parts[2]]))
    with gzip.open(os.path.join(OUT, "nfc-bpe.tokenizer.json.gz"), "wt", compresslevel=9) as f:
        f.write(tok.to_str())
    with gzip.open(os.path.join(OUT, "nfc-bpe.corpus.jsonl.gz"), "wt", compresslevel=9) as f:
        for t in inputs:
            ids = tok.encode(t, add_special_tokens=False).ids
            rec = {"t": t, "c": ids}
            d = tok.decode(ids, skip_special_tokens=False)
            if d != t:
                rec["cd"] = d
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{len(inputs)} strings, vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
