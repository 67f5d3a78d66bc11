"""Stage 1: .tflite flatbuffer -> Graph (tensors + op objects), refusing what cannot be generated."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyexit.codegen import ops as _ops  # noqa: F401  (fills the registry)
from tinyexit.codegen.fold import try_fold, with_value
from tinyexit.codegen.ir import OPS, Graph, Op, OpContext, Tensor
from tinyexit.codegen.quant import MultiplierRangeError
from tinyexit.codegen.validate import ITEM, RawModel, RawTensor, check, parse, safe_name
from tinyexit.errors import TinyexitError, UnsupportedModelError

_NP = {dtype: item[0] for dtype, item in ITEM.items()}


# Ops whose builtin options may be absent (their defaults are what the kernels assume).
OPTIONS_OPTIONAL = ("RESHAPE", "MEAN", "PAD", "FULLY_CONNECTED", "ADD", "QUANTIZE")


def read_model(path: str | os.PathLike, name: str | None = None) -> Graph:
    """Read an int8 .tflite into a Graph. Raises TinyexitError for unreadable, damaged or float models and
    UnsupportedModelError (naming op and index) for anything the generator cannot do; every message is one
    line naming the file, the op or tensor index and the field (`tinyexit.codegen.validate`)."""
    import tflite

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TinyexitError(f"cannot read model '{path}': {e.strerror}. Check the path.") from None
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise TinyexitError(f"'{path}' is not a TensorFlow Lite model (no 'TFL3' identifier): the file is corrupt, "
                            f"truncated or of another kind. Re-export it with tf.lite.TFLiteConverter.")
    try:
        m = parse(raw, tflite)
        check(m)
        return _build(m, path, name or path.stem)
    except UnsupportedModelError as e:
        raise UnsupportedModelError(f"{path.name}: {e}") from None  # which of several models it is
    except TinyexitError as e:
        raise TinyexitError(f"'{path}': {e}") from None
    except Exception as e:  # a check missing above: still one line, and named so that it gets reported
        raise TinyexitError(f"'{path}': tinyexit could not read this model ({type(e).__name__} in the code "
                            f"generator; please report it with the model).") from None


def _tensor(t: RawTensor) -> Tensor:
    if t.sparse:
        raise UnsupportedModelError(f"{t.label} is stored sparse; convert the model without sparsity (dense int8 "
                                    f"weights).")
    data = None
    if t.blob is not None:
        if t.dtype not in _NP:
            data = np.frombuffer(t.blob, np.uint8)
        else:
            data = np.frombuffer(t.blob, _NP[t.dtype]).reshape(t.shape)   # size checked by validate.check
    return Tensor(index=t.index, name=safe_name(t.name)[1:-1], shape=t.shape, dtype=t.dtype, scales=t.scales,
                  zero_points=t.zero_points, quantized_dim=t.quantized_dim, data=data)


def _build(m: RawModel, path: Path, name: str) -> Graph:
    """Tensors and op objects from the checked fields; shape arithmetic folded."""
    tensors = [_tensor(t) for t in m.tensors]
    inputs, outputs = m.inputs, m.outputs
    for kind, ids in (("input", inputs), ("output", outputs)):
        for i in ids:
            t = tensors[i]
            if t.dtype != "int8":
                what = "a float model" if t.dtype.startswith("float") else f"a model with {t.dtype} {kind}s"
                raise TinyexitError(
                    f"the file is {what}: {kind} '{t.name}' is {t.dtype}; tinyexit needs a fully int8 model: convert "
                    f"with a representative dataset, supported_ops=[TFLITE_BUILTINS_INT8] and "
                    f"inference_input_type=inference_output_type=tf.int8.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModelError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; the generated "
                                    f"library runs models with exactly one input and one output (split it).")
    ops = []
    for rop in m.ops:
        i, opname, ins, outs, options = rop.index, rop.name, rop.inputs, rop.outputs, rop.options
        folded = try_fold(opname, tensors, ins, options) if len(outs) == 1 else None
        if folded is not None and outs[0] not in outputs:
            tensors[outs[0]] = with_value(tensors[outs[0]], folded)  # shape arithmetic: no step
            continue
        cls = OPS.get(opname)
        if cls is None:
            raise UnsupportedModelError(
                f"op {i} ({opname}) is not supported (supported: {', '.join(sorted(OPS))}); replace the layer "
                f"or split the model before it.")
        ctx = OpContext(index=i, name=opname, tensors=tuple(tensors), inputs=ins, outputs=outs, options=options)
        if len(outs) != 1:
            raise ctx.refuse(f"{len(outs)} outputs are not supported")
        if options is None and opname not in OPTIONS_OPTIONAL:
            raise ctx.refuse("the builtin options are missing")
        # Steps are numbered after folding; error messages above use the op's index in the file.
        try:
            op = cls.from_tflite(ctx)
        except MultiplierRangeError as e:
            raise ctx.refuse(str(e)) from None
        ops.append(replace(op, index=len(ops)))
    return Graph(name=name, path=str(path), tensors=tuple(tensors), ops=tuple(ops), inputs=inputs,
                 outputs=outputs, tflm_ops=tuple(op.name for op in m.ops))


def count_macs(raw: bytes) -> int:
    """Multiply-accumulates of one inference of an int8 .tflite (any number of inputs and outputs), as the op
    classes count them (`Op.macs()`: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED; the other ops count zero).
    The one .tflite MAC counter: the generator's per-step figures and the quantize manifest's both come from it."""
    import tflite

    m = parse(raw, tflite)
    tensors = tuple(_tensor(t) for t in m.tensors)
    total = 0
    for rop in m.ops:
        cls = OPS.get(rop.name)
        if cls is None or cls.macs is Op.macs:
            continue
        ctx = OpContext(index=rop.index, name=rop.name, tensors=tensors, inputs=rop.inputs, outputs=rop.outputs,
                        options=rop.options)
        total += cls.from_tflite(ctx).macs()
    return total
