#!/usr/bin/env python3
"""Builds the tokenizer test fixtures in tests/fixtures/tokenizer/ (run with /tmp/refvenv/bin/python).

Inputs: the default model GGUF (SmolLM2), llama.cpp's ggml-vocab-llama-spm.gguf (vendored in the
llama-cpp-python sdist), /work/shared/datasets/{alpaca,sharegpt}.jsonl.
Outputs:
  smollm2.tokenizer.json.gz    HF tokenizer.json built by transformers from the GGUF, with the real SmolLM2
                               pre-tokenizer (Digits(individual) + ByteLevel) that the conversion drops.
  smollm2-vocab.gguf           the GGUF's tokenizer.* metadata only (vocab-only GGUF, no tensors).
  llama-spm.tokenizer.json.gz  HF tokenizer.json converted by transformers from ggml-vocab-llama-spm.gguf.
  ggml-vocab-llama-spm.gguf    copied as is.
  corpus.jsonl.gz              one JSON object per line: {"t": text, "a": SmolLM2 ids, "b": llama-spm ids,
                               "ad"/"bd": HF decode(ids) when it differs from the text}.
"""
import argparse, gzip, json, os, random, shutil, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
DATASETS = "/work/shared/datasets"

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Maße, Straße.",
    "Le cœur a ses raisons que la raison ne connaît point. Où est l'hôtel ?",
    "¿Dónde está la biblioteca? ¡Qué día más bonito! Mañana será otro día.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός.",
    "我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧！",
    "私はガラスを食べられます。それは私を傷つけません。カタカナとひらがな。",
    "나는 유리를 먹을 수 있어요. 그래도 아프지 않아요. 한국어 문장입니다.",
    "أنا قادر على أكل الزجاج و هذا لا يؤلمني. مرحبا بالعالم",
    "אני יכול לאכול זכוכית וזה לא מזיק לי. שלום עולם",
    "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती. नमस्ते दुनिया",
    "ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ สวัสดีชาวโลก",
    "நான் கண்ணாடி சாப்பிடுவேன், அதனால் எனக்கு ஒரு கேடும் வராது.",
    "Tôi có thể ăn thủy tinh mà không hại gì. Xin chào thế giới!",
    "Mogę jeść szkło i mi nie szkodzi. Zażółć gęślą jaźń.",
    "Ik kan glas eten, het doet mĳ geen kwaad. Ἐν ἀρχῇ ἦν ὁ λόγος.",
    "ᚠᛇᚻ᛫ᛒᛦᚦ᛫ᚠᚱᚩᚠᚢᚱ᛫ᚠᛁᚱᚪ᛫ᚷᛖᚻᚹᛦᛚᚳᚢᛗ ქართული ენა Հայերեն ❤ ☃ ∮ E⋅da = Q",
    "Ǆemal ǅ ǆ ﬁ ﬂ ﬃ Å Å é é (NFC vs NFD) ½ ² ³ Ⅻ ① ٣ ௫ ༣",
    "I can't, won't, shouldn't've; it's John's. WE'RE HERE, THEY'LL GO, I'D SAY, YOU'VE SEEN, I'M.",
]
CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (let i = 0; i < arr.length; ++i) { console.log(`item ${i}: ${arr[i]}`); }",
    "SELECT name, COUNT(*) AS n FROM users WHERE age >= 18 GROUP BY name ORDER BY n DESC;",
    "fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![0xFF; 16];\n    Ok(())\n}",
    "<html><body><div class=\"x\">&nbsp;&lt;tag&gt;</div></body></html>",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "    \t  indented\r\n\r\n  \n\n\n    more\t\t\tcode   ",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares\nprint(x)",
    "$ ls -la | grep '^d' && echo \"done\" >> /tmp/log.txt 2>&1",
]
EMOJI = [
    "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻", "🧑‍🤝‍🧑", "❤️‍🔥", "🇺🇸🇯🇵🇩🇪", "👍🏿", "😀😃😄😁", "🤷‍♀️", "1️⃣#️⃣",
    "🫠🫶🪿", "‼️ ™️ ©️",
]
SPECIAL_A = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<file_sep>", "<filename>", "<empty_output>"]
SPECIAL_B = ["<s>", "</s>", "<unk>"]
ODD = ["\u0085", "\u00a0", "\u1680", "\u2000", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f",
       "\u205f", "\u3000", "\u200b", "\u200d", "\ufeff", "\u180e", "\x0b", "\x0c", "\x1c", "\x00",
       "\ufffd", "\u0301", "\u034f", "\U0001F600", "\U000E0041", "\U0010FFFD", "\uffff", "\x7f"]


def random_codepoint(rng):
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x3040, 0x30FF),
              (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xFE00, 0xFFFD),
              (0x1F300, 0x1FAFF), (0x10000, 0x1007F), (0x20000, 0x2A6DF), (0x0, 0x1F)]
    lo, hi = rng.choice(blocks)
    return chr(rng.randint(lo, hi))


def generated(rng, n):
    out = []
    pieces = PROSE + CODE + EMOJI + ODD + SPECIAL_A + SPECIAL_B + [" ", "  ", "\n", "\t", "'s", "123"]
    for i in range(n):
        kind = i % 10
        if kind == 0:  # whitespace runs
            s = "".join(rng.choice([" ", "\n", "\t", "\r", "\u00a0", "\u3000", "x", "ab"])
                        * rng.randint(1, 40) for _ in range(rng.randint(1, 6)))
        elif kind == 1:  # digits
            s = " ".join(str(rng.randint(0, 10 ** rng.randint(1, 30))) for _ in range(rng.randint(1, 5)))
            s += rng.choice(["", ".5", ",000", "e-7", " ٣٤٥", " ４２", "%"])
        elif kind == 2:  # random code points
            s = "".join(random_codepoint(rng) for _ in range(rng.randint(1, 40)))
        elif kind == 3:  # emoji / ZWJ mixes
            s = "".join(rng.choice(EMOJI + [" ", "a", "\u200d", "\ufe0f"]) for _ in range(rng.randint(1, 8)))
        elif kind == 4:  # special tokens inside text
            s = "".join(rng.choice(SPECIAL_A + SPECIAL_B + ["hello", " world", "\n", " <", "|>", "<|im_", "s>"])
                        for _ in range(rng.randint(1, 8)))
        elif kind == 5:  # apostrophes, case, punctuation soup
            s = "".join(rng.choice(["'s", "'S", "'ll", "'LL", "'re", "'ve", "'m", "'d", "'", "\"", "...",
                                    "!!", "?", "--", "a", "B", " ", "é", "ß"]) for _ in range(rng.randint(1, 20)))
        elif kind == 6:  # long repeated chars (merge loop stress)
            s = rng.choice(["a", "ab", " ", "=", "-", "ä", "我", "😀", "0", "▁", "\n"]) * rng.randint(10, 400)
        else:  # mixtures
            s = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        out.append(s)
    return out


def dataset_texts(limit):
    """Prompts and outputs (cut to 800 chars), half from Alpaca, half from ShareGPT."""
    texts = []
    for name in ("alpaca.jsonl", "sharegpt.jsonl"):
        part = []
        with open(os.path.join(DATASETS, name)) as f:
            for line in f:
                obj = json.loads(line)
                part += [obj[k][:800] for k in ("prompt", "output") if isinstance(obj.get(k), str) and obj[k]]
                if len(part) >= limit // 2:
                    break
        texts += part[: limit // 2]
    return texts


def vocab_only_gguf(src, dst):
    import gguf
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, arch=str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8"))
    for key, field in r.fields.items():
        if not key.startswith("tokenizer.ggml.") and key != "tokenizer.chat_template":
            continue
        vt = field.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            if sub == gguf.GGUFValueType.STRING:
                val = [str(bytes(field.parts[i]), "utf-8") for i in field.data]
            else:
                val = [field.parts[i][0].item() for i in field.data]
            w.add_array(key, val)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_string(key, str(bytes(field.parts[-1]), "utf-8"))
        elif vt == gguf.GGUFValueType.BOOL:
            w.add_bool(key, bool(field.parts[-1][0]))
        else:
            w.add_uint32(key, int(field.parts[-1][0]))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.close()


def convert(gguf_path, out_json):
    from transformers import AutoTokenizer
    d = tempfile.mkdtemp()
    t = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
    t.save_pretrained(d)
    with open(os.path.join(d, "tokenizer.json")) as f:
        j = json.load(f)
    shutil.rmtree(d)
    return j


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2-gguf", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--spm-gguf", default="/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf")
    ap.add_argument("--num-dataset", type=int, default=7000)
    ap.add_argument("--num-generated", type=int, default=5000)
    args = ap.parse_args()
    from tokenizers import Tokenizer
    os.makedirs(OUT, exist_ok=True)

    a = convert(args.smollm2_gguf, None)
    # transformers' GGUF conversion drops SmolLM2's digit splitting; restore the real pre-tokenizer
    # (HuggingFaceTB/SmolLM2 tokenizer.json; llama.cpp's "smollm" pre-type does the same).
    a["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    b = convert(args.spm_gguf, None)
    shutil.copy(args.spm_gguf, os.path.join(OUT, "ggml-vocab-llama-spm.gguf"))
    vocab_only_gguf(args.smollm2_gguf, os.path.join(OUT, "smollm2-vocab.gguf"))
    for name, j in (("smollm2", a), ("llama-spm", b)):
        with gzip.open(os.path.join(OUT, name + ".tokenizer.json.gz"), "wt", compresslevel=9) as f:
            json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    ta = Tokenizer.from_str(json.dumps(a))
    tb = Tokenizer.from_str(json.dumps(b))

    rng = random.Random(1234)
    texts = PROSE + CODE + EMOJI + ODD + SPECIAL_A + SPECIAL_B + [""]
    texts += dataset_texts(args.num_dataset) + generated(rng, args.num_generated)
    n = 0
    with gzip.open(os.path.join(OUT, "corpus.jsonl.gz"), "wt", compresslevel=9) as f:
        for t in texts:
            ia = ta.encode(t).ids
            ib = tb.encode(t).ids
            rec = {"t": t, "a": ia, "b": ib}
            da = ta.decode(ia, skip_special_tokens=False)
            db = tb.decode(ib, skip_special_tokens=False)
            if da != t:
                rec["ad"] = da
            if db != t:
                rec["bd"] = db
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    print(f"wrote {n} strings to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
