"""The reader's first stage: the flatbuffer parsed into plain values (`parse`), then every value checked
before anything is built from it (`check`).

TFLM does not verify the files it runs, so a damaged .tflite can crash it or make it compute garbage; the
generator must not inherit that. `parse` copies every field the generator uses out of the flatbuffer (a field
whose offset points outside the file is reported with where it was being read); `check` refuses, with the
op or tensor index and the field, in one line:
  - schema version, one subgraph with ops, subgraph inputs and outputs in range;
  - per tensor: a known type, positive dimensions, a size a 32-bit target can address, a buffer index in
    range, a constant buffer holding exactly prod(shape) * itemsize bytes, scales finite and > 0, one zero
    point per scale within the type's range, per-channel scales on a dimension of that length;
  - per op: the opcode index in range and resolved as TFLM resolves it (GetBuiltinCode: the larger of
    builtin_code and deprecated_builtin_code), tensor indices in range, the inputs the op needs present,
    builtin options of the op's own type with usable values (strides, filter sizes, softmax beta, axes);
  - the graph: every tensor an op reads is a model input, a constant or written by an earlier op, and every
    tensor is written once (so the ops form a DAG in execution order; no op reads its own output).
Names from the file are printed escaped and truncated (`safe_name`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyexit.errors import TinyexitError, UnsupportedModelError

SCHEMA_VERSION = 3
MAX_NAME = 60
MAX_TENSOR_BYTES = (1 << 31) - 1        # offsets and sizes in the generated C are 32-bit
MAX_ACTIVATION_BYTES = 1 << 30          # no microcontroller holds more; larger means corrupt shapes
MAX_WINDOW = 65535                      # the kernels' params structs hold sizes and strides in 16 bits

# numpy type and zero-point range per TFLite tensor type (types the generator can meet in int8 models)
ITEM = {"int8": (np.int8, -128, 127), "uint8": (np.uint8, 0, 255), "int16": (np.int16, -32768, 32767),
        "int32": (np.int32, -(1 << 31), (1 << 31) - 1), "int64": (np.int64, -(1 << 31), (1 << 31) - 1),
        "float32": (np.float32, -(1 << 31), (1 << 31) - 1), "float16": (np.float16, -(1 << 31), (1 << 31) - 1),
        "float64": (np.float64, -(1 << 31), (1 << 31) - 1), "bool": (np.bool_, -(1 << 31), (1 << 31) - 1)}

# The builtin options table each op must carry (None: the op may have none).
OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
           "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions",
           "FULLY_CONNECTED": "FullyConnectedOptions", "SOFTMAX": "SoftmaxOptions", "RESHAPE": "ReshapeOptions",
           "ADD": "AddOptions", "MEAN": "ReducerOptions", "PAD": "PadOptions", "QUANTIZE": "QuantizeOptions",
           "STRIDED_SLICE": "StridedSliceOptions", "CONCATENATION": "ConcatenationOptions",
           "SHAPE": "ShapeOptions", "PACK": "PackOptions", "CAST": "CastOptions"}

# Inputs per op: (required positions, optional positions) — an optional input may be -1 (omitted).
ARITY = {"CONV_2D": (2, 1), "DEPTHWISE_CONV_2D": (2, 1), "FULLY_CONNECTED": (2, 1), "ADD": (2, 0),
         "AVERAGE_POOL_2D": (1, 0), "MAX_POOL_2D": (1, 0), "SOFTMAX": (1, 0), "RESHAPE": (1, 1),
         "MEAN": (2, 0), "PAD": (2, 0), "QUANTIZE": (1, 0), "STRIDED_SLICE": (4, 0), "SHAPE": (1, 0),
         "CAST": (1, 0)}

# Integer option fields and their valid range.
OPTION_RANGES = {
    "Conv2DOptions": {"StrideH": (1, MAX_WINDOW), "StrideW": (1, MAX_WINDOW), "DilationHFactor": (1, MAX_WINDOW),
                      "DilationWFactor": (1, MAX_WINDOW)},
    "DepthwiseConv2DOptions": {"StrideH": (1, MAX_WINDOW), "StrideW": (1, MAX_WINDOW),
                               "DilationHFactor": (1, MAX_WINDOW), "DilationWFactor": (1, MAX_WINDOW),
                               "DepthMultiplier": (1, MAX_WINDOW)},   # 0: TFLM computes nothing
    "Pool2DOptions": {"StrideH": (1, MAX_WINDOW), "StrideW": (1, MAX_WINDOW), "FilterHeight": (1, MAX_WINDOW),
                      "FilterWidth": (1, MAX_WINDOW)},
}


def safe_name(name) -> str:
    """A name from the file, quoted, non-printable characters escaped, at most MAX_NAME characters."""
    if name is None:
        return "''"
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).decode("utf-8", errors="backslashreplace")
    text = "".join("\\" + c if c in "'\\" else c if c.isprintable() else c.encode("unicode_escape").decode()
                   for c in str(name))
    if len(text) > MAX_NAME:
        text = text[:MAX_NAME - 3] + "..."
    return f"'{text}'"


@dataclass
class RawTensor:
    index: int
    name: bytes
    type_code: int
    dtype: str                      # lower-case TFLite type name ("type<N>" for an unknown code)
    shape: tuple[int, ...]
    buffer: int
    scales: tuple[float, ...]       # float32 values as Python floats
    zero_points: tuple[int, ...]
    quantized_dim: int
    sparse: bool
    blob: bytes | None = None       # the buffer's bytes (None: no data)

    @property
    def label(self) -> str:
        return f"tensor {self.index} ({safe_name(self.name)})"


@dataclass
class RawOp:
    index: int
    opcode_index: int
    code: int                       # TFLM's builtin code (GetBuiltinCode)
    name: str                       # op name ("CUSTOM(name)", "BUILTIN_<n>" for an unknown code)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options_type: int
    options_name: str | None        # the options table's type name, None when absent
    options: object | None          # the initialised tflite.*Options object

    @property
    def label(self) -> str:
        return f"op {self.index} ({self.name})"


@dataclass
class RawModel:
    version: int
    tensors: list[RawTensor]
    ops: list[RawOp]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    buffers: int


class Corrupt(TinyexitError):
    """The flatbuffer's structure is damaged (an offset or length points outside the file)."""


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def builtin_code(code) -> int:
    """TFLM's GetBuiltinCode: max(builtin_code, deprecated_builtin_code), read raw from the table (the
    `tflite` package's BuiltinCode() substitutes the deprecated field below 127, which TFLM does not)."""
    import flatbuffers

    o = code._tab.Offset(10)
    raw = code._tab.Get(flatbuffers.number_types.Int32Flags, o + code._tab.Pos) if o else 0
    return max(int(raw), int(code.DeprecatedBuiltinCode()))


def _touch(options) -> None:
    """Read every scalar and vector field of an options table now, so that damage surfaces while parsing."""
    import inspect

    for attr in dir(options):
        if attr[0].isupper() and not attr.startswith(("GetRoot", "Init")) and not attr.endswith("BufferHasIdentifier"):
            fn = getattr(options, attr)
            if callable(fn) and not inspect.signature(fn).parameters:   # element accessors take an index
                fn()


def _ints(vec_len: int, as_numpy) -> tuple[int, ...]:
    return tuple(int(x) for x in as_numpy()) if vec_len else ()


def parse(raw: bytes, tflite) -> RawModel:
    """Copy the first subgraph's fields out of the flatbuffer. Raises Corrupt naming what was being read."""
    op_names, type_names, opt_names = (_enum_names(tflite.BuiltinOperator), _enum_names(tflite.TensorType),
                                       _enum_names(tflite.BuiltinOptions))
    where = "the model table"
    try:
        model = tflite.Model.GetRootAsModel(raw, 0)
        version = int(model.Version())
        where = "the subgraph list"
        if model.SubgraphsLength() < 1:
            raise TinyexitError("the model has no subgraph: the file is empty or corrupt. Re-export it.")
        sg = model.Subgraphs(0)
        nbuf = int(model.BuffersLength())
        tensors = []
        for i in range(sg.TensorsLength()):
            where = f"tensor {i}"
            t = sg.Tensors(i)
            q = t.Quantization()
            scales, zps, qdim = (), (), 0
            if q is not None and q.ScaleLength():
                scales = tuple(float(s) for s in np.asarray(q.ScaleAsNumpy(), np.float32))
                zps = _ints(q.ZeroPointLength(), q.ZeroPointAsNumpy)
                qdim = int(q.QuantizedDimension())
            rt = RawTensor(index=i, name=t.Name() or b"", type_code=int(t.Type()),
                           dtype=type_names.get(t.Type(), f"type{t.Type()}").lower(),
                           shape=_ints(t.ShapeLength(), t.ShapeAsNumpy), buffer=int(t.Buffer()), scales=scales,
                           zero_points=zps, quantized_dim=qdim, sparse=t.Sparsity() is not None)
            if 0 <= rt.buffer < nbuf:
                where = f"buffer {rt.buffer} of tensor {i}"
                b = model.Buffers(rt.buffer)
                if b.DataLength():
                    rt.blob = b.DataAsNumpy().tobytes()
                elif b.Offset() > 1:
                    off, size = int(b.Offset()), int(b.Size())
                    if off + size > len(raw):
                        raise TinyexitError(f"{rt.label}: its buffer {rt.buffer} lies past the end of the file "
                                            f"(offset {off} + {size} bytes > {len(raw)}): the model is truncated. "
                                            f"Re-export it.")
                    rt.blob = raw[off:off + size]
            tensors.append(rt)
        ops = []
        ncodes = int(model.OperatorCodesLength())
        for i in range(sg.OperatorsLength()):
            where = f"op {i}"
            op = sg.Operators(i)
            oi = int(op.OpcodeIndex())
            if not 0 <= oi < ncodes:
                raise TinyexitError(f"op {i}: opcode_index {oi} is out of range (the model has {ncodes} operator "
                                    f"codes): the model is corrupt. Re-export it.")
            code = model.OperatorCodes(oi)
            bc = builtin_code(code)
            name = op_names.get(bc, f"BUILTIN_{bc}")
            if name == "CUSTOM":
                name = f"CUSTOM({safe_name(code.CustomCode())[1:-1]})"
            otype = int(op.BuiltinOptionsType())
            oname, options = opt_names.get(otype), None
            if otype:
                table = op.BuiltinOptions()
                ocls = getattr(tflite, oname, None) if oname else None
                if table is not None and ocls is not None:
                    options = ocls()
                    options.Init(table.Bytes, table.Pos)
                    _touch(options)
            ops.append(RawOp(index=i, opcode_index=oi, code=bc, name=name,
                             inputs=_ints(op.InputsLength(), op.InputsAsNumpy),
                             outputs=_ints(op.OutputsLength(), op.OutputsAsNumpy), options_type=otype,
                             options_name=oname if otype else None, options=options))
        where = "the subgraph's inputs and outputs"
        inputs = _ints(sg.InputsLength(), sg.InputsAsNumpy)
        outputs = _ints(sg.OutputsLength(), sg.OutputsAsNumpy)
    except TinyexitError:
        raise
    except Exception:   # the flatbuffer accessors fail in many ways on a damaged file
        raise Corrupt(f"the file could not be parsed as a TFLite flatbuffer: {where} points outside the file or "
                      f"holds a broken offset; the file is corrupt or truncated. Re-export it.") from None
    return RawModel(version=version, tensors=tensors, ops=ops, inputs=inputs, outputs=outputs, buffers=nbuf)


def _check_tensor(t: RawTensor, nbuf: int) -> None:
    bad = lambda what: TinyexitError(f"{t.label}: {what}: the model is corrupt. Re-export it.")  # noqa: E731
    if t.dtype.startswith("type"):
        raise bad(f"type code {t.type_code} is not a TFLite tensor type")
    if t.dtype not in ITEM:     # string, complex, resource, variant, int4, ...: TFLM cannot allocate them either
        raise UnsupportedModelError(f"{t.label} is of type {t.dtype.upper()}, which int8 models do not use (tinyexit "
                                    f"reads {', '.join(k.upper() for k in ITEM)})")
    if len(t.shape) > 8:
        raise bad(f"rank {len(t.shape)} (shape of {len(t.shape)} dimensions)")
    for d, n in enumerate(t.shape):
        if n < 1:
            raise TinyexitError(f"{t.label}: dimension {d} of shape {list(t.shape)} is {n}; tinyexit needs static, "
                                f"positive dimensions (convert with a fixed batch size, e.g. batch_size=1).")
    item = ITEM[t.dtype]
    size = math.prod(t.shape) * np.dtype(item[0]).itemsize
    if size > MAX_TENSOR_BYTES:
        raise bad(f"shape {list(t.shape)} needs {size:,} bytes, more than a 32-bit target can address")
    if not 0 <= t.buffer < nbuf:
        raise bad(f"buffer index {t.buffer} is out of range (the model has {nbuf} buffers)")
    if t.blob is not None and len(t.blob) != size:
        raise bad(f"buffer {t.buffer} holds {len(t.blob)} bytes but shape {list(t.shape)} of {t.dtype} needs "
                  f"{size}")
    if t.scales:
        for k, s in enumerate(t.scales):
            if not (math.isfinite(s) and s > 0):
                raise bad(f"quantization scale[{k}] is {s}; scales must be finite and > 0")
        if len(t.zero_points) != len(t.scales):
            raise bad(f"{len(t.scales)} quantization scales but {len(t.zero_points)} zero points")
        lo, hi = item[1], item[2]
        for k, z in enumerate(t.zero_points):
            if not lo <= z <= hi:
                raise bad(f"quantization zero_point[{k}] is {z}, outside the {t.dtype} range [{lo}, {hi}]")
        if len(t.scales) > 1:
            if not 0 <= t.quantized_dim < len(t.shape):
                raise bad(f"quantized_dimension {t.quantized_dim} is not a dimension of shape {list(t.shape)}")
            if t.shape[t.quantized_dim] != len(t.scales):
                raise bad(f"{len(t.scales)} per-channel scales on dimension {t.quantized_dim} of shape "
                          f"{list(t.shape)}")


def _check_options(op: RawOp, tensors: list[RawTensor]) -> None:
    want = OPTIONS.get(op.name)
    if op.options_type and op.options_name is None:
        raise TinyexitError(f"{op.label}: builtin_options_type {op.options_type} is not a TFLite options type: "
                            f"the model is corrupt. Re-export it.")
    if op.options_name is not None and want is not None and op.options_name != want:
        raise UnsupportedModelError(f"{op.label}: its builtin options are {op.options_name}, but {op.name} takes "
                                    f"{want}: the model is corrupt. Re-export it.")
    o = op.options
    if o is None or op.options_name != want:
        return
    for field, (lo, hi) in OPTION_RANGES.get(want, {}).items():
        v = int(getattr(o, field)())
        if not lo <= v <= hi:
            raise UnsupportedModelError(f"{op.label}: option {field} is {v}, outside [{lo}, {hi}]")
    if want == "SoftmaxOptions":
        beta = float(o.Beta())
        if not (math.isfinite(beta) and beta > 0):
            raise UnsupportedModelError(f"{op.label}: option beta is {beta}; it must be finite and > 0")
    if want in ("ConcatenationOptions", "PackOptions") and op.outputs and 0 <= op.outputs[0] < len(tensors):
        rank = len(tensors[op.outputs[0]].shape)
        axis = int(o.Axis())
        if not -rank <= axis < rank:
            raise UnsupportedModelError(f"{op.label}: option axis {axis} is not an axis of its rank-{rank} output")


def _check_operands(op: RawOp, tensors: list[RawTensor]) -> None:
    """Operands whose shape another operand fixes: SOFTMAX's output has its input's values (TFLM writes only
    those), PAD's paddings are [rank, 2], STRIDED_SLICE's begin, end and strides [rank], one value each."""
    if op.name == "SOFTMAX" and op.inputs and op.outputs:
        x, y = tensors[op.inputs[0]], tensors[op.outputs[0]]
        if math.prod(x.shape) != math.prod(y.shape):
            raise UnsupportedModelError(f"{op.label}: output {y.label} has shape {list(y.shape)} for an input of "
                                        f"shape {list(x.shape)}; softmax keeps the shape")
    if op.name not in ("PAD", "STRIDED_SLICE") or len(op.inputs) < 2:
        return
    rank = len(tensors[op.inputs[0]].shape)
    want = {"PAD": {1: (rank, 2)}, "STRIDED_SLICE": {1: (rank,), 2: (rank,), 3: (rank,)}}[op.name]
    for pos, shape in want.items():
        t = tensors[op.inputs[pos]]          # present: ARITY is checked first
        if math.prod(t.shape) != math.prod(shape):
            raise UnsupportedModelError(f"{op.label}: input {pos} {t.label} has shape {list(t.shape)}, expected "
                                        f"{list(shape)} for a rank-{rank} input")


def _check_multipliers(op: RawOp, tensors: list[RawTensor]) -> None:
    """Scale ratios for which TFLM's Prepare aborts (TFLITE_CHECK, SIGABRT) rather than run: the int8 softmax's
    beta * input_scale * 2^26 must exceed 1 (QuantizeMultiplierGreaterThanOne), the int8 ADD's output
    multiplier 2 * max(input scales) / (2^20 * output scale) must be below 1 (QuantizeMultiplierSmallerThanOneExp)."""
    scale = lambda pos: tensors[op.inputs[pos]].scales[0] if tensors[op.inputs[pos]].scales else None  # noqa: E731
    out = tensors[op.outputs[0]].scales[0] if tensors[op.outputs[0]].scales else None
    if op.name == "SOFTMAX" and op.options_name == "SoftmaxOptions" and scale(0):
        real = float(np.float32(op.options.Beta())) * scale(0) * (1 << 26)
        if not real > 1.0:
            raise UnsupportedModelError(f"{op.label}: beta x input scale x 2^26 = {real:.3g} is not above 1, which "
                                        f"TFLM's int8 softmax requires (its input scale or beta is corrupt)")
    if op.name == "ADD" and len(op.inputs) == 2 and scale(0) and scale(1) and out:
        real = 2.0 * max(scale(0), scale(1)) / ((1 << 20) * out)
        if not real < 1.0:
            raise UnsupportedModelError(f"{op.label}: the output multiplier 2 x max(input scales) / (2^20 x output "
                                        f"scale) = {real:.3g} is not below 1, which TFLM's int8 ADD requires")


def check(m: RawModel) -> None:
    """Refuse a model whose fields are inconsistent (see the module docstring)."""
    if m.version != SCHEMA_VERSION:
        raise TinyexitError(f"the model has schema version {m.version}, not {SCHEMA_VERSION} (what TFLM reads): the "
                            f"file is corrupt or from another format. Re-export it.")
    n = len(m.tensors)
    for t in m.tensors:
        _check_tensor(t, m.buffers)
    for kind, ids in (("input", m.inputs), ("output", m.outputs)):
        for i in ids:
            if not 0 <= i < n:
                raise TinyexitError(f"the subgraph's {kind} tensor index {i} is out of range (the model has {n} "
                                    f"tensors): the model is corrupt. Re-export it.")
    if not m.ops:
        raise UnsupportedModelError("the model has no operators; there is nothing to generate.")
    activation_bytes = sum(math.prod(t.shape) * np.dtype(ITEM[t.dtype][0]).itemsize for t in m.tensors
                           if t.blob is None and t.dtype in ITEM)
    if activation_bytes > MAX_ACTIVATION_BYTES:
        raise TinyexitError(f"the model's activation tensors need {activation_bytes:,} bytes, more than any "
                            f"microcontroller holds; the shapes are probably corrupt. Re-export the model.")
    written: dict[int, str] = {i: "is a model input" for i in m.inputs}
    for t in m.tensors:
        if t.blob is not None:
            written.setdefault(t.index, f"is a constant (buffer {t.buffer} holds data)")
    for op in m.ops:
        for pos, i in enumerate(op.inputs):
            if i == -1:
                continue
            if not 0 <= i < n:
                raise TinyexitError(f"{op.label}: input {pos} is tensor index {i}, out of range (the model has {n} "
                                    f"tensors): the model is corrupt. Re-export it.")
        if not op.outputs:
            raise TinyexitError(f"{op.label}: the op has no outputs: the model is corrupt. Re-export it.")
        for pos, i in enumerate(op.outputs):
            if not 0 <= i < n:
                raise TinyexitError(f"{op.label}: output {pos} is tensor index {i}, out of range (the model has "
                                    f"{n} tensors): the model is corrupt. Re-export it.")
        need, optional = ARITY.get(op.name, (0, 0))
        if op.name in ARITY and not need <= len(op.inputs) <= need + optional:
            raise UnsupportedModelError(f"{op.label}: {len(op.inputs)} inputs, expected "
                                        f"{need if not optional else f'{need} to {need + optional}'}")
        for pos, i in enumerate(op.inputs[:need]):
            if i == -1:
                raise UnsupportedModelError(f"{op.label}: required input {pos} is omitted (-1)")
        for pos, i in enumerate(op.inputs):
            if i != -1 and i not in written:
                raise TinyexitError(f"{op.label}: input {pos} reads {m.tensors[i].label} before any op writes it "
                                    f"(the ops are not in execution order, or the graph has a cycle): the model is "
                                    f"corrupt. Re-export it.")
        for pos, i in enumerate(op.outputs):
            if i in written:
                raise TinyexitError(f"{op.label}: output {pos} is {m.tensors[i].label}, which {written[i]}; a "
                                    f"tensor is written once: the model is corrupt. Re-export it.")
            written[i] = f"is written by {op.label}"
        _check_options(op, m.tensors)
        _check_operands(op, m.tensors)
        _check_multipliers(op, m.tensors)
    for i in m.outputs:
        if not written.get(i, "").startswith("is written by"):
            raise TinyexitError(f"the model's output {m.tensors[i].label} is not written by any op: the model is "
                                f"corrupt. Re-export it.")
