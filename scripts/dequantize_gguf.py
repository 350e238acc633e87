#!/usr/bin/env python3
"""Writes a copy of a GGUF file with every quantized tensor dequantized to F32, F16 or BF16 (gguf-py's
reference dequantization), metadata unchanged. Used to check the forward pass without activation
quantization and to give peers the same weights in a float type.

    python scripts/dequantize_gguf.py IN.gguf OUT.gguf {f32,f16,bf16}
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
                "bf16": GGMLQuantizationType.BF16}[kind]
    for t in reader.tensors:
        data = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(x) for x in reversed(t.shape))  # numpy order
        data = data.reshape(shape)
        if t.tensor_type == GGMLQuantizationType.F32 and len(shape) == 1:
            writer.add_tensor(t.name, data)  # norms stay F32 as llama.cpp keeps them
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
