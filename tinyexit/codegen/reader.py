"""Stage 1: .tflite flatbuffer -> Graph (tensors + op objects), refusing what cannot be generated."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyexit.codegen import ops as _ops  # noqa: F401  (fills the registry)
from tinyexit.codegen.fold import try_fold, with_value
from tinyexit.codegen.ir import OPS, Graph, OpContext, Tensor
from tinyexit.errors import TinyexitError, UnsupportedModelError

_NP = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
       "float32": np.float32, "float16": np.float16, "float64": np.float64, "bool": np.bool_}


# Ops whose builtin options may be absent (their defaults are what the kernels assume).
OPTIONS_OPTIONAL = ("RESHAPE", "MEAN", "PAD", "FULLY_CONNECTED", "ADD", "QUANTIZE")


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _fix(tflite):
    return (_enum_names(tflite.BuiltinOperator), _enum_names(tflite.TensorType),
            _enum_names(tflite.BuiltinOptions))


def read_model(path: str | os.PathLike, name: str | None = None) -> Graph:
    """Read an int8 .tflite into a Graph. Raises TinyexitError for unreadable or float models and
    UnsupportedModelError (naming op and index) for anything the generator cannot do."""
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
        return _read(raw, path, name or path.stem, tflite)
    except UnsupportedModelError as e:
        raise UnsupportedModelError(f"{path.name}: {e}") from None  # which of several models it is
    except TinyexitError:
        raise
    except Exception as e:  # the flatbuffer accessors fail in many ways on a damaged file
        raise TinyexitError(f"'{path}' could not be parsed as a TFLite flatbuffer ({type(e).__name__}: {e}); "
                            f"the file is probably corrupt or truncated. Re-export it.") from None


def _tensor(model, t, idx: int, raw: bytes, type_names) -> Tensor:
    dtype = type_names.get(t.Type(), f"type{t.Type()}").lower()
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    q = t.Quantization()
    scales, zps, qdim = (), (), 0
    if q is not None and q.ScaleLength():
        scales = tuple(float(s) for s in np.asarray(q.ScaleAsNumpy(), np.float32))
        zps = tuple(int(z) for z in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,) * len(scales)
        qdim = q.QuantizedDimension()
    if t.Sparsity() is not None:
        raise UnsupportedModelError(f"tensor '{t.Name().decode(errors='replace')}' is stored sparse; convert the "
                                    f"model without sparsity (dense int8 weights).")
    data = None
    b = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
    if b is not None:
        blob = None
        if b.DataLength():
            blob = b.DataAsNumpy().tobytes()
        elif b.Offset() > 1:
            off, size = int(b.Offset()), int(b.Size())
            if off + size > len(raw):
                raise TinyexitError(f"tensor '{t.Name().decode(errors='replace')}' points past the end of the "
                                    f"file: the model is truncated. Re-export it.")
            blob = raw[off:off + size]
        if blob is not None:
            if dtype not in _NP:
                data = np.frombuffer(blob, np.uint8)
            else:
                arr = np.frombuffer(blob, _NP[dtype])
                n = int(np.prod(shape)) if shape else 1
                if arr.size != n:
                    raise TinyexitError(f"tensor '{t.Name().decode(errors='replace')}' holds {arr.size} values "
                                        f"for shape {list(shape)}: the model is corrupt. Re-export it.")
                data = arr.reshape(shape)
    return Tensor(index=idx, name=t.Name().decode(errors="replace"), shape=shape, dtype=dtype, scales=scales,
                  zero_points=zps, quantized_dim=qdim, data=data)


def _read(raw: bytes, path: Path, name: str, tflite) -> Graph:
    op_names, type_names, opt_names = _fix(tflite)
    model = tflite.Model.GetRootAsModel(raw, 0)
    if model.SubgraphsLength() < 1:
        raise TinyexitError(f"'{path}' has no subgraph: the model is empty or corrupt.")
    sg = model.Subgraphs(0)
    tensors = tuple(_tensor(model, sg.Tensors(i), i, raw, type_names) for i in range(sg.TensorsLength()))
    inputs = tuple(int(i) for i in sg.InputsAsNumpy()) if sg.InputsLength() else ()
    outputs = tuple(int(i) for i in sg.OutputsAsNumpy()) if sg.OutputsLength() else ()
    for kind, ids in (("input", inputs), ("output", outputs)):
        for i in ids:
            t = tensors[i]
            if t.dtype != "int8":
                what = "a float model" if t.dtype.startswith("float") else f"a model with {t.dtype} {kind}s"
                raise TinyexitError(
                    f"'{path}' is {what}: {kind} '{t.name}' is {t.dtype}. tinyexit generates code for fully int8 "
                    f"models: convert with optimizations=[tf.lite.Optimize.DEFAULT], a representative dataset, "
                    f"supported_ops=[TFLITE_BUILTINS_INT8] and inference_input_type=inference_output_type=tf.int8.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModelError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; the generated "
                                    f"library runs models with exactly one input and one output (split it).")
    ops = []
    names = []
    tensors = list(tensors)
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        bc = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        opname = op_names.get(bc, f"BUILTIN_{bc}")
        if opname == "CUSTOM":
            opname = f"CUSTOM({(code.CustomCode() or b'?').decode(errors='replace')})"
        names.append(opname)
        options = None
        otype = op.BuiltinOptionsType()
        if otype:
            table = op.BuiltinOptions()
            oname = opt_names.get(otype)
            ocls = getattr(tflite, oname, None) if oname else None
            if table is not None and ocls is not None:
                options = ocls()
                options.Init(table.Bytes, table.Pos)
        ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        folded = try_fold(opname, tensors, ins, options) if len(outs) == 1 else None
        if folded is not None and outs[0] not in outputs:
            tensors[outs[0]] = with_value(tensors[outs[0]], folded)  # shape arithmetic: no step
            continue
        cls = OPS.get(opname)
        if cls is None:
            raise UnsupportedModelError(
                f"op {i} ({opname}) is not supported by the code generator. Supported ops: "
                f"{', '.join(sorted(OPS))}. Replace the layer in the model (or split the model before it).")
        ctx = OpContext(index=i, name=opname, tensors=tuple(tensors), inputs=ins, outputs=outs, options=options)
        if len(outs) != 1:
            raise ctx.refuse(f"{len(outs)} outputs are not supported")
        if options is None and opname not in OPTIONS_OPTIONAL:
            raise ctx.refuse("the builtin options are missing")
        # Steps are numbered after folding; error messages above use the op's index in the file.
        ops.append(replace(cls.from_tflite(ctx), index=len(ops)))
    return Graph(name=name, path=str(path), tensors=tuple(tensors), ops=tuple(ops), inputs=inputs,
                 outputs=outputs, tflm_ops=tuple(names))
