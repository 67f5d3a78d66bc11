"""Reading and cutting int8 .tflite flatbuffers.

    tensor_qparams(tfl, "input"|"output") / tensor_shape(tfl, ...)  -> QParams / shape of an input or output
    set_input_qparams(tfl, qp)           -> bytes                     the same model with other input parameters
    set_tensor_qparams(tfl, which, qp)   -> bytes                     ... other input or output parameters
    cut_tflite(tfl, inputs, outputs)     -> bytes                     the sub-model between tensors
    find_boundary(tfl, point, shape, ..) -> tensor index              where a Keras layer's output lies
    output_order(tfl, names)             -> positions of the Keras outputs in the subgraph's output list
    count_macs(tfl)                      -> int                       conv, depthwise, fully connected MACs
"""
from __future__ import annotations

import struct
from typing import Sequence

import numpy as np

from tinyexit.errors import TinyexitError
from tinyexit.quantize.qparams import QParams


def _subgraph(tfl: bytes):
    import tflite

    m = tflite.Model.GetRootAsModel(tfl, 0)
    if m.SubgraphsLength() != 1:
        raise TinyexitError("expected a .tflite with one subgraph")
    return m, m.Subgraphs(0)


def _io_tensor(sg, which: str, index: int) -> int:
    if which == "input":
        return sg.Inputs(index)
    if which == "output":
        return sg.Outputs(index)
    raise ValueError(which)


def tensor_qparams(tfl: bytes, which: str = "input", index: int = 0) -> QParams:
    _, sg = _subgraph(tfl)
    q = sg.Tensors(_io_tensor(sg, which, index)).Quantization()
    if q is None or q.ScaleLength() != 1:
        raise TinyexitError(f"the model's {which} {index} is not per-tensor quantized")
    return QParams(float(q.Scale(0)), int(q.ZeroPoint(0)))


def tensor_shape(tfl: bytes, which: str = "input", index: int = 0) -> list[int]:
    _, sg = _subgraph(tfl)
    return [int(v) for v in sg.Tensors(_io_tensor(sg, which, index)).ShapeAsNumpy()]


def set_input_qparams(tfl: bytes, qp: QParams, index: int = 0) -> bytes:
    """Return a copy of `tfl` whose input tensor `index` has scale/zero point `qp` (`set_tensor_qparams`)."""
    return set_tensor_qparams(tfl, "input", qp, index)


def set_tensor_qparams(tfl: bytes, which: str, qp: QParams, index: int = 0) -> bytes:
    """Return a copy of `tfl` whose input or output tensor `index` has scale/zero point `qp` (in-place patch of
    the flatbuffer's one-element scale and zero-point vectors; nothing else changes)."""
    buf = bytearray(tfl)
    _, sg = _subgraph(bytes(buf))
    target = _io_tensor(sg, which, index)
    q = sg.Tensors(target).Quantization()
    if q is None or q.ScaleLength() != 1 or q.ZeroPointLength() != 1:
        raise TinyexitError(f"the model {which} is not per-tensor quantized; cannot set its scale and zero point")
    scale_at = q._tab.Vector(q._tab.Offset(8))
    zp_at = q._tab.Vector(q._tab.Offset(10))
    struct.pack_into("<f", buf, scale_at, qp.scale)
    struct.pack_into("<q", buf, zp_at, qp.zero_point)
    out = bytes(buf)
    if tensor_qparams(out, which, index) != QParams(float(np.float32(qp.scale)), int(qp.zero_point)):
        raise AssertionError("flatbuffer patch did not take")
    # a builder that shared one vector between tensors would make the patch leak into others: refuse
    before, after = _all_qparams(tfl), _all_qparams(out)
    if any(before[i] != v for i, v in after.items() if i != target):
        raise TinyexitError(f"the .tflite shares quantization vectors between tensors; cannot set the model {which}'s "
                            f"scale and zero point in place (convert with the TFLite converter of tensorflow 2.21)")
    return out


def _all_qparams(tfl: bytes) -> dict[int, tuple]:
    _, sg = _subgraph(tfl)
    out = {}
    for i in range(sg.TensorsLength()):
        q = sg.Tensors(i).Quantization()
        if q is not None and q.ScaleLength():
            out[i] = (tuple(q.ScaleAsNumpy().tolist()), tuple(q.ZeroPointAsNumpy().tolist()))
    return out


def cut_tflite(tfl: bytes, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
    """The sub-model of a one-subgraph .tflite that computes tensors `outputs` from tensors `inputs`: the
    operators they need (in the original order), their tensors, buffers and op codes, renumbered; tensors,
    weights and quantization parameters are copied unchanged, so the piece computes bit for bit what the
    same operators compute inside the whole model."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(tfl))
    if len(model.subgraphs) != 1:
        raise TinyexitError("expected a .tflite with one subgraph")
    sg = model.subgraphs[0]
    producer = {int(t): i for i, op in enumerate(sg.operators) for t in op.outputs}
    graph_inputs = {int(t) for t in sg.inputs}
    needed, seen, stack = set(), set(int(t) for t in inputs), [int(t) for t in outputs]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in producer:
            needed.add(producer[t])
            stack.extend(int(u) for u in sg.operators[producer[t]].inputs if u >= 0)
        elif t in graph_inputs:
            raise TinyexitError(f"tensor {t} ({sg.tensors[t].name!r}) needs the model input besides the piece's "
                                f"own input: the exit point does not cut the graph")
    ops = [sg.operators[i] for i in sorted(needed)]
    used = set(int(t) for t in inputs) | set(int(t) for t in outputs)
    for op in ops:
        for field in (op.inputs, op.outputs, op.intermediates):
            used |= {int(t) for t in (field if field is not None else []) if t >= 0}
    t_map = {old: new for new, old in enumerate(sorted(used))}
    tensors = [sg.tensors[t] for t in sorted(used)]
    b_keep = sorted({0} | {int(t.buffer) for t in tensors} | {int(m.buffer) for m in (model.metadata or [])})
    b_map = {old: new for new, old in enumerate(b_keep)}
    for t in tensors:
        t.buffer = b_map[int(t.buffer)]
    for m in model.metadata or []:
        m.buffer = b_map[int(m.buffer)]
    c_keep = sorted({int(op.opcodeIndex) for op in ops})
    c_map = {old: new for new, old in enumerate(c_keep)}

    def remap(arr):
        return None if arr is None else np.array([t_map[int(t)] if t >= 0 else -1 for t in arr], np.int32)

    for op in ops:
        op.inputs, op.outputs, op.intermediates = remap(op.inputs), remap(op.outputs), remap(op.intermediates)
        op.opcodeIndex = c_map[int(op.opcodeIndex)]
    sg.operators, sg.tensors = ops, tensors
    sg.inputs, sg.outputs = remap(inputs), remap(outputs)
    model.buffers = [model.buffers[b] for b in b_keep]
    model.operatorCodes = [model.operatorCodes[c] for c in c_keep]
    model.signatureDefs = []
    return bytes(fu.convert_object_to_bytearray(model))


def _dominators(tfl: bytes) -> dict[int, set[int]]:
    """For every activation tensor, the activation tensors every path from the model input to it passes
    through (itself included); constants are ignored."""
    _, sg = _subgraph(tfl)
    dom = {int(sg.Inputs(i)): {int(sg.Inputs(i))} for i in range(sg.InputsLength())}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        ins = [int(op.Inputs(j)) for j in range(op.InputsLength()) if op.Inputs(j) >= 0 and int(op.Inputs(j)) in dom]
        common = set.intersection(*(dom[u] for u in ins)) if ins else set()
        for j in range(op.OutputsLength()):
            t = int(op.Outputs(j))
            dom[t] = common | {t}
    return dom


def find_boundary(tfl: bytes, point: str, shape: Sequence[int], must_dominate: Sequence[int]) -> int:
    """Index of the tensor of a whole-model .tflite that holds the output of Keras layer `point`: its name
    mentions the layer (the converter names fused tensors after every layer they fuse; a quantization-aware
    model's tensors are named after tfmot's "quant_<layer>" wrappers), its shape is
    [1, *shape], and every path to the tensors `must_dominate` (the exit's output and all later outputs)
    passes through it. Of several such tensors (a layer lowered to several ops) the last one wins."""
    import re

    _, sg = _subgraph(tfl)
    dom = _dominators(tfl)
    # tfmot's quantize wrappers name a layer's ops "quant_<layer>/..."
    pattern = re.compile(rf"(^|/)(quant_)?{re.escape(point)}(_\d+)?/")
    want = [1, *[int(v) for v in shape]]
    cands = []
    for t in dom:
        name = sg.Tensors(t).Name().decode(errors="replace")
        if not any(pattern.search(part) for part in name.split(";")):
            continue
        if [int(v) for v in sg.Tensors(t).ShapeAsNumpy()] != want:
            continue
        if all(t in dom.get(int(o), set()) for o in must_dominate):
            cands.append(t)
    if not cands:
        raise TinyexitError(f"cannot find the tensor of exit point '{point}' (shape {want}) in the int8 model "
                            f"such that the exit and the rest of the network start from it; check that "
                            f"model.json's exit point is the layer where the exit head branches off, or quantize with "
                            f"--method convert")
    order = {int(sg.Operators(i).Outputs(j)): i for i in range(sg.OperatorsLength())
             for j in range(sg.Operators(i).OutputsLength())}
    return max(cands, key=lambda t: order.get(t, -1))


def output_order(tfl: bytes, names: Sequence[str] = ()) -> list[int]:
    """Positions in the subgraph's output list of Keras outputs 0, 1, ... (the converter may list them in
    another order; the signature names them output_0, output_1, ... for Keras 3, after the output layers
    `names` for tf_keras, or "quant_<name>" for a tfmot quantization-aware model)."""
    m, sg = _subgraph(tfl)
    n = sg.OutputsLength()
    if n == 1:
        return [0]
    if m.SignatureDefsLength() < 1:
        raise TinyexitError("multi-output .tflite without a signature: cannot map outputs to exits")
    sd = m.SignatureDefs(0)
    by_name = {sd.Outputs(i).Name().decode(): sd.Outputs(i).TensorIndex() for i in range(sd.OutputsLength())}
    outs = [sg.Outputs(i) for i in range(n)]
    for keys in ([f"output_{k}" for k in range(n)], list(names), [f"quant_{v}" for v in names]):
        if len(keys) == n and all(k in by_name for k in keys):
            return [outs.index(by_name[k]) for k in keys]
    raise TinyexitError(f"unexpected signature output names {sorted(by_name)} (expected output_0.. or the "
                        f"exit names {list(names)})")


def _opcode(m, op) -> int:
    oc = m.OperatorCodes(op.OpcodeIndex())
    return max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())


def count_macs(tfl: bytes) -> int:
    """Multiply-accumulates of one inference: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (pooling,
    softmax and the rest are not MACs), counted by the code generator's op classes (one .tflite counter)."""
    from tinyexit.codegen.reader import count_macs as op_macs

    return op_macs(tfl)
