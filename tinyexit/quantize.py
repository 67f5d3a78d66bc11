"""int8 by segments (DESIGN.md 4).

The trained Keras model is cut at its exit points into *segments* (model input -> exit point 1 -> ... ->
final softmax) and *exit heads* (exit point k -> exit k softmax). Each piece is converted on its own to a
full-integer int8 .tflite (int8 input and output, TFLITE_BUILTINS_INT8), with representative data taken
from the training split (the float activations at the boundary for pieces that start at an exit point).
Then the boundary quantization is made to agree exactly: segment k's output scale/zero point is written
into segment k+1's input tensor and into the input tensor of every head attached after segment k. Chaining
the int8 pieces then gives the same bytes as an int8 conversion of the whole model (tests/test_quantize.py).

Public API:
    split_model(model, points)           -> (segments, heads)         Keras models, generic over the graph
    convert_int8(model, representative)  -> bytes                     one .tflite
    tensor_qparams(tfl, "input"|"output") / set_input_qparams(tfl, qp) -> QParams / patched bytes
    count_macs(tfl)                      -> int                       conv, depthwise, fully connected MACs
    quantize_array(x, qp) / dequantize_array(q, qp)
    TflmModel(tfl).run(q)                -> int8 outputs, one inference at a time on the firmware's oracle
    Int8Pipeline.from_dir(RUN/quant)     .run(x) -> int8 output of every exit (the firmware's view)
    quantize_run(run_dir, ...)           -> report dict; writes RUN/quant/ atomically
"""
from __future__ import annotations

import contextlib
import os
import struct
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tinyexit.errors import TinyexitError, brief
from tinyexit.io import atomic_dir, read_json, write_bytes, write_json
from tinyexit.policy.decisions import QParams  # one QParams type for the whole package

QUANT_DIR = "quant"
DEFAULT_NUM_CALIBRATION = 500



# ---------------------------------------------------------------------------------------------------------
# Splitting the Keras functional graph
# ---------------------------------------------------------------------------------------------------------

def _is_keras_tensor(obj) -> bool:
    return hasattr(obj, "_keras_history") and obj.__class__.__name__ == "KerasTensor"


def _rebuild(boundary, new_input, target, piece: str):
    """Re-apply the layers between `boundary` (a KerasTensor of the original graph) and `target` to
    `new_input`; returns the new output tensor. Any path to `target` that does not pass through
    `boundary` is an error: the exit point would not cut the graph."""
    from keras import tree

    memo = {id(boundary): new_input}

    def visit(t):
        key = id(t)
        if key in memo:
            return memo[key]
        op, node_index, tensor_index = t._keras_history
        node = op._inbound_nodes[node_index]
        if node.is_input:
            raise TinyexitError(
                f"cannot cut {piece}: it needs the model input '{t.name}' besides its own input, so the "
                f"exit point does not separate the graph (a skip connection crosses it). Choose an exit "
                f"point that every path from the input passes through.")
        args = tree.map_structure(lambda a: visit(a) if _is_keras_tensor(a) else a, node.arguments.args)
        kwargs = tree.map_structure(lambda a: visit(a) if _is_keras_tensor(a) else a, node.arguments.kwargs)
        outs = tree.flatten(op(*args, **kwargs))
        for i, orig in enumerate(tree.flatten(node.outputs)):
            memo[id(orig)] = outs[i]
        return memo[key]

    return visit(target)


def split_model(model, points: Sequence[str]):
    """Cut a functional Keras model with outputs [exit_1, ..., exit_K, final] at the layers named in
    `points` (one per early exit, in order). Returns (segments, heads): K+1 segment models
    (input -> point 1, point 1 -> point 2, ..., point K -> final output) and K head models
    (point k -> exit k output). The pieces share the original layers (and weights)."""
    import keras

    outputs = list(model.outputs)
    if len(outputs) != len(points) + 1:
        raise TinyexitError(
            f"the model has {len(outputs)} outputs but model.json lists {len(points)} early exits; the "
            f"model must output one softmax per early exit plus the final one (final last). Retrain or fix "
            f"model.json.")
    boundaries = []
    for name in points:
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise TinyexitError(f"exit point layer '{name}' (model.json) is not in the model; fix model.json "
                                f"or retrain") from None
        boundaries.append(layer.output)
    if len(model.inputs) != 1:
        raise TinyexitError("tinyexit quantizes models with exactly one input")

    segments, heads = [], []
    starts = [model.inputs[0]] + boundaries
    ends = boundaries + [outputs[-1]]
    for k, (start, end) in enumerate(zip(starts, ends)):
        if k == 0:
            segments.append(keras.Model(model.inputs[0], end, name="seg0"))
            continue
        inp = keras.Input(shape=tuple(start.shape[1:]), dtype=start.dtype, name=f"seg{k}_input")
        segments.append(keras.Model(inp, _rebuild(start, inp, end, f"segment {k}"), name=f"seg{k}"))
    for k, start in enumerate(boundaries):
        inp = keras.Input(shape=tuple(start.shape[1:]), dtype=start.dtype, name=f"head{k}_input")
        heads.append(keras.Model(inp, _rebuild(start, inp, outputs[k], f"exit head {k}"), name=f"head{k}"))
    return segments, heads


def boundary_activations(model, points: Sequence[str], x: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
    """Float activations at each exit point, computed by the original model on `x`."""
    import keras

    if not points:
        return []
    probe = keras.Model(model.inputs, [model.get_layer(p).output for p in points])
    outs = probe.predict(x, batch_size=batch_size, verbose=0)
    return [outs] if len(points) == 1 else list(outs)


# ---------------------------------------------------------------------------------------------------------
# Conversion and flatbuffer helpers
# ---------------------------------------------------------------------------------------------------------

def convert_int8(model, representative: np.ndarray, *, per_channel: bool = True) -> bytes:
    """Full-integer int8 conversion: int8 input and output, builtin int8 kernels only. `per_channel=False`
    gives conv and dense weights one scale per tensor (the op tests reach the per-tensor kernel paths)."""
    import tensorflow as tf

    rep = np.asarray(representative, dtype=np.float32)

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel:
        conv._experimental_disable_per_channel = True
    try:
        with _quiet():
            return bytes(conv.convert())
    except Exception as e:  # the converter raises many types; give the user the op it choked on
        raise TinyexitError(f"int8 conversion of '{model.name}' failed: {e}. Use layers with int8 TFLite "
                            f"builtin kernels (conv, depthwise conv, dense, pooling, add, reshape, softmax).") from e


@contextlib.contextmanager
def _quiet():
    """Silence the converter's chatter (Python prints, warnings and C++ logs on fds 1 and 2); replay it on
    stderr if the conversion fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        ok = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
            ok = True
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if not ok:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace")[-4000:])


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
    """Return a copy of `tfl` whose input tensor `index` has scale/zero point `qp` (in-place patch of the
    flatbuffer's one-element scale and zero-point vectors; nothing else changes)."""
    buf = bytearray(tfl)
    _, sg = _subgraph(bytes(buf))
    q = sg.Tensors(_io_tensor(sg, "input", index)).Quantization()
    if q is None or q.ScaleLength() != 1 or q.ZeroPointLength() != 1:
        raise TinyexitError("the model input is not per-tensor quantized; cannot align boundary parameters")
    scale_at = q._tab.Vector(q._tab.Offset(8))
    zp_at = q._tab.Vector(q._tab.Offset(10))
    struct.pack_into("<f", buf, scale_at, qp.scale)
    struct.pack_into("<q", buf, zp_at, qp.zero_point)
    out = bytes(buf)
    if tensor_qparams(out, "input", index) != QParams(float(np.float32(qp.scale)), qp.zero_point):
        raise AssertionError("flatbuffer patch did not take")
    # a builder that shared one vector between tensors would make the patch leak into others: refuse
    target = _io_tensor(sg, "input", index)
    if any(_all_qparams(tfl)[i] != v for i, v in _all_qparams(out).items() if i != target):
        raise TinyexitError("the .tflite shares quantization vectors between tensors; cannot align boundary "
                            "parameters in place (convert with the TFLite converter of tensorflow 2.21)")
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
    softmax and the rest are not MACs)."""
    import tflite

    m, sg = _subgraph(tfl)
    B = tflite.BuiltinOperator
    total = 0
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = _opcode(m, op)
        if code not in (B.CONV_2D, B.DEPTHWISE_CONV_2D, B.FULLY_CONNECTED):
            continue
        w = [int(v) for v in sg.Tensors(op.Inputs(1)).ShapeAsNumpy()]
        out = [int(v) for v in sg.Tensors(op.Outputs(0)).ShapeAsNumpy()]
        out_elems = int(np.prod(out))
        if code == B.CONV_2D:          # weights OHWI
            total += out_elems * w[1] * w[2] * w[3]
        elif code == B.DEPTHWISE_CONV_2D:  # weights 1HWC
            total += out_elems * w[1] * w[2]
        else:                           # weights [out, in]
            total += out_elems * w[1]
    return total


def quantize_array(x: np.ndarray, qp: QParams) -> np.ndarray:
    """float -> int8 as TFLite's QUANTIZE does: round half away from zero, add zero point, saturate."""
    v = np.asarray(x, dtype=np.float32) / np.float32(qp.scale)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + qp.zero_point, -128, 127).astype(np.int8)


def dequantize_array(q: np.ndarray, qp: QParams) -> np.ndarray:
    return (np.asarray(q, dtype=np.float32) - qp.zero_point) * np.float32(qp.scale)


# ---------------------------------------------------------------------------------------------------------
# Running int8 models on the firmware's oracle (TFLM reference kernels)
# ---------------------------------------------------------------------------------------------------------

class TflmModel:
    """One .tflite on tflite_micro's interpreter (the bit-exact oracle of the generated C)."""

    def __init__(self, tfl: bytes, output_names: Sequence[str] = ()):
        from tflite_micro.python.tflite_micro import runtime

        self.tfl = tfl
        self._interp = runtime.Interpreter.from_bytes(tfl)
        _, sg = _subgraph(tfl)
        self.num_outputs = sg.OutputsLength()
        self.order = output_order(tfl, output_names)
        self.input_shape = tensor_shape(tfl, "input")

    def run(self, q: np.ndarray) -> list[np.ndarray]:
        """int8 inputs [N, ...] -> one int8 array [N, ...] per Keras output (Keras order)."""
        q = np.asarray(q, dtype=np.int8)
        outs = [[] for _ in range(self.num_outputs)]
        shape = tuple(self.input_shape)
        for i in range(len(q)):
            self._interp.set_input(q[i].reshape(shape), 0)
            self._interp.invoke()
            for k, pos in enumerate(self.order):
                outs[k].append(np.array(self._interp.get_output(pos), dtype=np.int8).reshape(-1))
        return [np.stack(o) if o else np.zeros((0,), np.int8) for o in outs]


class Int8Pipeline:
    """The int8 segments and heads chained as the firmware chains them."""

    def __init__(self, segments: Sequence[bytes], heads: Sequence[bytes], after_segment: Sequence[int]):
        self.segments = [TflmModel(b) for b in segments]
        self.heads = [TflmModel(b) for b in heads]
        self.after_segment = list(after_segment)
        self.input_qparams = tensor_qparams(segments[0], "input")
        self.exit_qparams = [tensor_qparams(b, "output") for b in heads] + [tensor_qparams(segments[-1], "output")]

    @classmethod
    def from_dir(cls, quant_dir: str | os.PathLike) -> "Int8Pipeline":
        quant_dir = Path(quant_dir)
        man = read_manifest(quant_dir)
        early = [e for e in man["exits"] if e["file"]]
        blobs = [_read_piece(quant_dir / p["file"]) for p in man["segments"] + early]
        segs, heads = blobs[:len(man["segments"])], blobs[len(man["segments"]):]
        try:
            return cls(segs, heads, [e["after_segment"] for e in early])
        except Exception as e:   # tflite_micro refuses a piece (a broken file the flatbuffer parse let through)
            raise TinyexitError(f"the int8 pieces in {quant_dir} do not load on tflite_micro ({brief(e)}); "
                                f"re-run `tinyexit quantize {quant_dir.parent}`") from None

    def run_q(self, q: np.ndarray) -> list[np.ndarray]:
        """int8 model inputs -> int8 output of every exit (early exits in order, final last)."""
        acts = [np.asarray(q, np.int8)]
        for seg in self.segments:
            acts.append(seg.run(acts[-1])[0].reshape((len(q),) + tuple(seg_out_shape(seg))))
        outs = [head.run(acts[k + 1])[0] for head, k in zip(self.heads, self.after_segment)]
        return outs + [acts[-1].reshape(len(q), -1)]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """float model inputs (quantized as the firmware's front end does) -> int8 exit outputs."""
        return self.run_q(quantize_array(x, self.input_qparams))


def seg_out_shape(m: TflmModel) -> list[int]:
    return tensor_shape(m.tfl, "output")[1:]


def _read_piece(path: Path) -> bytes:
    """A .tflite of RUN/quant whose flatbuffer parses (its input and output tensors can be read)."""
    b = path.read_bytes()
    try:
        tensor_shape(b, "input")
        tensor_shape(b, "output")
    except Exception as e:   # struct.error, IndexError, ... from the flatbuffer accessors on a corrupt file
        raise TinyexitError(f"{path} is not a readable TFLite model ({brief(e)}); re-run "
                            f"`tinyexit quantize {path.parent.parent}`") from None
    return b


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_MANIFEST_FIELD = {   # what read_manifest accepts in each field of a segment or exit entry
    "file": lambda v: v is None or isinstance(v, str), "name": lambda v: isinstance(v, str),
    "input": lambda v: isinstance(v, dict) and {"scale", "zero_point"} <= v.keys(),
    "output": lambda v: isinstance(v, dict) and {"scale", "zero_point"} <= v.keys(),
    "input_shape": lambda v: isinstance(v, list) and all(_is_int(d) and d > 0 for d in v),
    "output_shape": lambda v: isinstance(v, list) and all(_is_int(d) and d > 0 for d in v),
    "after_segment": _is_int, "macs_to_exit": _is_int,
}


def read_manifest(quant_dir: str | os.PathLike) -> dict:
    """RUN/quant/manifest.json, checked: every key the later stages read, and every .tflite it lists exists.
    Anything missing or garbled is a one-line TinyexitError naming the file and `tinyexit quantize`."""
    quant_dir = Path(quant_dir)
    path = quant_dir / "manifest.json"
    fix = f"re-run `tinyexit quantize {quant_dir.parent}`"
    man = read_json(path, fix)
    problem = None
    for key, fields in (("segments", ("file", "input", "output", "input_shape", "output_shape")),
                        ("exits", ("name", "file", "after_segment", "output", "macs_to_exit"))):
        entries = man.get(key)
        if not (isinstance(entries, list) and entries):
            problem = f'no "{key}" list'
        else:
            bad = next(((k, f) for k, e in enumerate(entries) for f in fields
                        if not (isinstance(e, dict) and f in e and _MANIFEST_FIELD[f](e[f]))), None)
            if bad:
                problem = f'{key}[{bad[0]}] has no valid "{bad[1]}"'
        if problem:
            break
    if problem is None and "no_exit_macs" not in man:
        problem = 'no "no_exit_macs"'
    if problem:
        raise TinyexitError(f"{path} is not a complete quantization manifest ({problem}; written by an older or "
                            f"another tool?); {fix}")
    for entry in man["segments"] + man["exits"]:
        f = entry["file"]
        if f is not None and not (isinstance(f, str) and (quant_dir / f).is_file()):
            raise TinyexitError(f"{path} lists {quant_dir / str(f)}, which does not exist; {fix}")
    return man


# ---------------------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------------------

def quantize_model(model, points: Sequence[str], representative: np.ndarray, method: str = "cut",
                   whole: bytes | None = None) -> dict:
    """int8 pieces of `model` cut at the exit points. Returns {"segments": [bytes], "heads": [bytes],
    "boundaries": [...], "whole": bytes | None, "method": method}.

    method "cut" (default): convert the whole model once and cut its int8 graph at the exit-point tensors
        (`cut_tflite`); the pieces are the whole model's operators with its quantization, so chaining them
        gives the whole model's bytes for any graph.
    method "convert": convert each piece of `split_model` on its own (representative data: the float
        activations at its input) and write segment k's output scale/zero point into the input of segment
        k+1 and of the heads after it. Bit-exact with the whole model on DS-CNN, but not in general: the
        converter's calibration of a piece can differ from the same tensors' inside the whole model (seen
        on a residual network: 1 LSB on a third of the outputs).
    whole: an int8 .tflite of the same network converted elsewhere (a quantization-aware-trained model with
        the ranges it learned); with method "cut" it is cut instead of converting `model`."""
    rep = np.asarray(representative, np.float32)
    if method == "cut":
        return _quantize_by_cutting(model, points, rep, whole)
    if whole is not None:
        raise TinyexitError("a converted whole model can only be cut (method 'cut')")
    if method != "convert":
        raise TinyexitError(f"unknown quantization method '{method}' (cut or convert)")
    segments, heads = split_model(model, points)
    acts = boundary_activations(model, points, rep)
    seg_b = [convert_int8(segments[0], rep)] + [convert_int8(s, a) for s, a in zip(segments[1:], acts)]
    head_b = [convert_int8(h, a) for h, a in zip(heads, acts)]
    boundaries = []
    for k in range(len(points)):
        qp = tensor_qparams(seg_b[k], "output")
        rec = {"exit_point": points[k], "after_segment": k, **qp.to_json(), "adjusted": []}
        for kind, blobs, idx in (("segment", seg_b, k + 1), ("head", head_b, k)):
            own = tensor_qparams(blobs[idx], "input")
            blobs[idx] = set_input_qparams(blobs[idx], qp)
            rec["adjusted"].append({"piece": f"{kind}{idx}", "own_scale": own.scale,
                                    "own_zero_point": own.zero_point,
                                    "relative_scale_change": abs(own.scale - qp.scale) / qp.scale})
        boundaries.append(rec)
    return {"segments": seg_b, "heads": head_b, "boundaries": boundaries, "whole": None, "method": "convert"}


def _quantize_by_cutting(model, points: Sequence[str], rep: np.ndarray, whole: bytes | None = None) -> dict:
    split_model(model, points)  # refuses exit points that do not cut the Keras graph, with a clear message
    if whole is None:
        whole = convert_int8(model, rep)
    _, sg = _subgraph(whole)
    from tinyexit.models import output_names
    outs = [int(sg.Outputs(i)) for i in output_order(whole, output_names(model))]     # Keras order: exits, final last
    bounds = []
    for k, p in enumerate(points):
        shape = model.get_layer(p).output.shape[1:]
        bounds.append(find_boundary(whole, p, shape, outs[k:]))
    inp = int(sg.Inputs(0))
    starts = [inp] + bounds
    ends = bounds + [outs[-1]]
    seg_b = [cut_tflite(whole, [a], [b]) for a, b in zip(starts, ends)]
    head_b = [cut_tflite(whole, [bounds[k]], [outs[k]]) for k in range(len(points))]
    boundaries = []
    for k, (p, t) in enumerate(zip(points, bounds)):
        q = sg.Tensors(t).Quantization()
        boundaries.append({"exit_point": p, "after_segment": k, "tensor": sg.Tensors(t).Name().decode(),
                           "scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0))})
    return {"segments": seg_b, "heads": head_b, "boundaries": boundaries, "whole": whole, "method": "cut"}


def _load_run(run_dir: Path):
    from tinyexit.train import load_model, read_model_json

    meta = read_model_json(run_dir)    # checked: the final exit last, a data recipe
    return meta, load_model(run_dir)


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if len(y) else float("nan")


def quantize_run(run_dir: str | os.PathLike, *, num_calibration: int = DEFAULT_NUM_CALIBRATION,
                 num_eval: int | None = None, seed: int = 0, verify_whole: bool = True,
                 method: str = "cut", whole: bytes | None = None,
                 log: Callable[[str], None] | None = None) -> dict:
    """Quantize RUN/model.keras by segments into RUN/quant/ (manifest.json, *.tflite, report.json).

    num_calibration: training inputs used as representative data; num_eval: test inputs evaluated
    (None = all); verify_whole: count test inputs on which the chained pieces and the whole int8 model
    give different bytes (must be 0); method: "cut" or "convert" (see quantize_model); whole: an int8
    .tflite of RUN's network converted elsewhere, cut instead of converting (the ranges a quantization-aware
    training learned; no calibration then). Returns the report."""
    from tinyexit.train import load_split

    log = log or (lambda s: None)
    run_dir = Path(run_dir)
    if num_calibration < 1:
        raise TinyexitError("--num-calibration must be at least 1")
    meta, model = _load_run(run_dir)
    early = meta["exits"][:-1]
    points = [e["point"] for e in early]

    x_train, _ = load_split(run_dir, "train")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x_train), size=min(num_calibration, len(x_train)), replace=False)
    rep = x_train[np.sort(pick)]
    if whole is None:
        log(f"int8 conversion ({method}) into {len(points) + 1} segments and {len(points)} exit heads "
            f"({len(rep)} representative inputs from the training split)")
    else:
        log(f"cutting the given int8 model into {len(points) + 1} segments and {len(points)} exit heads")
    q = quantize_model(model, points, rep, method=method, whole=whole)

    seg_macs = [count_macs(b) for b in q["segments"]]
    head_macs = [count_macs(b) for b in q["heads"]]
    names = [e["name"] for e in meta["exits"]]
    exit_macs = [sum(seg_macs[:k + 1]) + sum(head_macs[:k + 1]) for k in range(len(early))]
    exit_macs.append(sum(seg_macs) + sum(head_macs))

    manifest = {
        "segments": [{"name": f"seg{k}", "file": f"seg{k}.tflite",
                      "input_shape": tensor_shape(b, "input")[1:], "output_shape": tensor_shape(b, "output")[1:],
                      "input": tensor_qparams(b, "input").to_json(), "output": tensor_qparams(b, "output").to_json(),
                      "macs": seg_macs[k]} for k, b in enumerate(q["segments"])],
        "exits": [{"name": names[k], "file": f"{names[k]}.tflite", "after_segment": k,
                   "output": tensor_qparams(q["heads"][k], "output").to_json(), "macs": head_macs[k],
                   "macs_to_exit": exit_macs[k]} for k in range(len(early))]
                 + [{"name": names[-1], "file": None, "after_segment": len(points),
                     "output": tensor_qparams(q["segments"][-1], "output").to_json(), "macs": 0,
                     "macs_to_exit": exit_macs[-1]}],
        "no_exit_macs": sum(seg_macs),
        "classes": list(meta.get("classes", [])),
    }

    # Evaluate float and int8 on the test split.
    x_test, y_test = load_split(run_dir, "test")
    if num_eval is not None and num_eval < len(x_test):  # a seeded subset: the split is ordered by class
        keep = np.sort(np.random.default_rng(seed + 1).choice(len(x_test), num_eval, replace=False))
        x_test, y_test = x_test[keep], y_test[keep]
    float_out = model.predict(x_test, batch_size=256, verbose=0)
    float_out = float_out if isinstance(float_out, (list, tuple)) else [float_out]
    log(f"evaluating int8 on {len(x_test)} test inputs with tflite_micro (the firmware's oracle)")
    pipe = Int8Pipeline(q["segments"], q["heads"], list(range(len(early))))
    int8_out = pipe.run(x_test)
    report = {
        "evaluator": "tflite_micro", "method": q["method"],
        "ranges": "calibrated" if whole is None else "given (quantization-aware training)",
        "split": "test", "num_test": int(len(y_test)), "num_calibration": int(len(rep)) if whole is None else 0,
        "exits": [{"name": names[k],
                   "float_accuracy": _accuracy(np.argmax(float_out[k], -1), y_test),
                   "int8_accuracy": _accuracy(np.argmax(int8_out[k], -1), y_test),
                   "int8_float_agreement": _accuracy(np.argmax(int8_out[k], -1), np.argmax(float_out[k], -1)),
                   "macs_to_exit": exit_macs[k]} for k in range(len(names))],
        "no_exit_macs": sum(seg_macs),
        "boundaries": q["boundaries"],
    }
    if verify_whole:
        log("checking the chained pieces against the whole int8 model")
        from tinyexit.models import output_names
        whole = TflmModel(q["whole"] if q["whole"] is not None else convert_int8(model, rep),
                          output_names(model))
        ref = whole.run(quantize_array(x_test, pipe.input_qparams))
        same = np.ones(len(x_test), bool)
        for a, b in zip(int8_out, ref):
            same &= np.all(a.reshape(len(x_test), -1) == b.reshape(len(x_test), -1), axis=1)
        report["whole_model_check"] = {"inputs": int(len(x_test)), "identical": int(same.sum())}

    with atomic_dir(run_dir / QUANT_DIR) as tmp:
        for k, b in enumerate(q["segments"]):
            write_bytes(tmp / f"seg{k}.tflite", b)
        for k, b in enumerate(q["heads"]):
            write_bytes(tmp / f"{names[k]}.tflite", b)
        write_json(tmp / "manifest.json", manifest)
        write_json(tmp / "report.json", report)
    return report
