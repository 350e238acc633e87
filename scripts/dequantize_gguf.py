#!/usr/bin/env python3
"""Writes a copy of a GGUF file with every quantized tensor dequantized to F32, F16 or BF16 (gguf-py's
reference dequantization), metadata unchanged. Used to check the forward pass without activation
quantization and to give peers the same weights in a float type.

q8_0 requantizes instead: every 2-D weight whose row length is a multiple of 32 becomes Q8_0
(gguf-py's reference quantizer, as llama-quantize's Q8_0), other 2-D weights F16, 1-D tensors F32.
Used to benchmark the same model in Q8_0 (bench/cpu_vs_llamacpp.sh).

    python scripts/dequantize_gguf.py IN.gguf OUT.gguf {f32,f16,bf16,q8_0}
"""
import sys

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType, quants
from gguf.constants import GGUFValueType


def main(src, dst, kind):
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"]
    arch = bytes(arch.parts[arch.data[0]]).decode()
    writer = GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == GGUFValueType.ARRAY:
            sub = field.types[1]
            if sub == GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8", errors="surrogateescape") for i in field.data]
            else:
                value = [field.parts[i][0].item() for i in field.data]
            writer.add_key_value(name, value, vtype, sub_type=sub)
        elif vtype == GGUFValueType.STRING:
            writer.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8"), vtype)
        else:
            writer.add_key_value(name, field.parts[field.data[0]][0].item(), vtype)
    out_type = {"f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16,
                "bf16": GGMLQuantizationType.BF16, "q8_0": GGMLQuantizationType.Q8_0}[kind]
    for t in reader.tensors:
        data = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(x) for x in reversed(t.shape))  # numpy order
        data = data.reshape(shape)
        if t.tensor_type == GGMLQuantizationType.F32 and len(shape) == 1:
            writer.add_tensor(t.name, data)  # norms stay F32 as llama.cpp keeps them
        elif out_type == GGMLQuantizationType.Q8_0:
            if len(shape) == 2 and shape[-1] % 32 == 0:
                q = quants.quantize(data, GGMLQuantizationType.Q8_0)
                writer.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q8_0)
            elif len(shape) == 1:
                writer.add_tensor(t.name, data)
            else:
                writer.add_tensor(t.name, data.astype(np.float16))
        elif out_type == GGMLQuantizationType.F32:
            writer.add_tensor(t.name, data)
        elif out_type == GGMLQuantizationType.F16:
            writer.add_tensor(t.name, data.astype(np.float16))
        else:
            q = quants.quantize(data, GGMLQuantizationType.BF16)
            writer.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
