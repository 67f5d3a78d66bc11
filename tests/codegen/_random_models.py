"""Random int8 TFLite models written directly as flatbuffers (no converter), for the randomized conformance
test and benchmarks/conformance_sweep.py.

Writing the flatbuffer lets a model carry any scale, zero point, bias and activation clamp: scales drawn
log-uniformly, scales whose float32 input x filter product is inexact (so a multiplier taken from the float32
product differs from one taken from the double product), and biases placed so that an accumulator of a known
input lands next to an output rounding boundary (a .5 tie), where a multiplier that is off by a few units
changes the output. Every layer's output is compared: `prefixes()` cuts the model after each layer (one
single-input, single-output model per layer), the cut keeping only that layer's ancestors.

The generator draws: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED (narrow, wide with hundreds of outputs, deep
stacks of 6-10), ADD (of two branches), AVERAGE_POOL_2D, MAX_POOL_2D, MEAN (over H, W), SOFTMAX, CONCATENATION,
RESHAPE and QUANTIZE (int8 -> int8 requantization), with fused activations NONE / RELU / RELU6 / RELU_N1_TO_1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

INT8, INT32 = fb.TensorType.INT8, fb.TensorType.INT32
ACTS = {"NONE": fb.ActivationFunctionType.NONE, "RELU": fb.ActivationFunctionType.RELU,
        "RELU6": fb.ActivationFunctionType.RELU6, "RELU_N1_TO_1": fb.ActivationFunctionType.RELU_N1_TO_1}
SCALE_CLASSES = ("loguniform", "inexact", "tie")


@dataclass
class TensorSpec:
    shape: tuple
    dtype: int = INT8
    scales: tuple = ()              # empty: not quantized (shape tensors)
    zero_points: tuple = ()
    quantized_dim: int = 0
    data: np.ndarray | None = None
    name: str = ""


@dataclass
class OpSpec:
    code: int                       # fb.BuiltinOperator
    inputs: tuple
    outputs: tuple
    options_type: int = fb.BuiltinOptions.NONE
    options: object = None
    kind: str = ""                  # the layer type the generator drew (for the per-type counts)


@dataclass
class Layer:
    name: str
    kind: str
    output: int
    cut: int                        # the tensor its test model starts from (its input; for ADD and
                                    # CONCATENATION the tensor both operands are computed from)


@dataclass
class Graph:
    """A single-input graph and the layers a test reads."""
    tensors: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    input: int = 0
    layers: list = field(default_factory=list)

    def add_tensor(self, spec: TensorSpec) -> int:
        spec.name = spec.name or f"t{len(self.tensors)}"
        self.tensors.append(spec)
        return len(self.tensors) - 1

    def act_tensor(self, shape, scale: float, zero_point: int) -> int:
        return self.add_tensor(TensorSpec(tuple(int(d) for d in shape), INT8, (float(np.float32(scale)),),
                                          (int(zero_point),)))

    def const(self, data: np.ndarray, dtype=INT32) -> int:
        return self.add_tensor(TensorSpec(tuple(data.shape), dtype, data=data))

    def add_op(self, op: OpSpec) -> int:
        self.ops.append(op)
        return op.outputs[0]

    def spec(self, t: int) -> TensorSpec:
        return self.tensors[t]

    def serialize(self, output: int, input: int | None = None) -> bytes:
        """The model computing tensor `output` from tensor `input` (default: the graph input), holding only
        the ops between them."""
        inp = self.input if input is None else input
        producer = {o: k for k, op in enumerate(self.ops) for o in op.outputs}
        need, stack = set(), [output]
        while stack:
            t = stack.pop()
            k = producer.get(t)
            if t != inp and k is not None and k not in need:
                need.add(k)
                stack.extend(self.ops[k].inputs)
        ops = [self.ops[k] for k in sorted(need)]
        used = sorted({inp, output} | {t for op in ops for t in (*op.inputs, *op.outputs)})
        remap = {t: i for i, t in enumerate(used)}
        return _pack([self.tensors[t] for t in used],
                     [(op, [remap[t] for t in op.inputs], [remap[t] for t in op.outputs]) for op in ops],
                     remap[inp], remap[output])


def _pack(tensors, ops, inp: int, out: int) -> bytes:
    m = fb.ModelT()
    m.version = 3
    m.description = "tinyexit random conformance model"
    m.buffers = [fb.BufferT()]
    codes: dict[int, int] = {}
    m.operatorCodes = []
    sg = fb.SubGraphT()
    sg.tensors = []
    for spec in tensors:
        t = fb.TensorT()
        t.shape = list(spec.shape)
        t.type = spec.dtype
        t.name = spec.name
        t.buffer = 0
        if spec.data is not None:
            b = fb.BufferT()
            b.data = np.ascontiguousarray(spec.data).view(np.uint8).ravel()      # numpy: packed in one copy
            t.buffer = len(m.buffers)
            m.buffers.append(b)
        if spec.scales:
            q = fb.QuantizationParametersT()
            q.scale = [float(s) for s in spec.scales]
            q.zeroPoint = [int(z) for z in spec.zero_points]
            q.quantizedDimension = spec.quantized_dim
            t.quantization = q
        sg.tensors.append(t)
    sg.operators = []
    for spec, ins, outs in ops:
        if spec.code not in codes:
            c = fb.OperatorCodeT()
            c.builtinCode = spec.code
            c.deprecatedBuiltinCode = min(spec.code, 127)
            c.version = 1
            codes[spec.code] = len(m.operatorCodes)
            m.operatorCodes.append(c)
        o = fb.OperatorT()
        o.opcodeIndex = codes[spec.code]
        o.inputs, o.outputs = list(ins), list(outs)
        o.builtinOptionsType = spec.options_type
        o.builtinOptions = spec.options
        sg.operators.append(o)
    sg.inputs, sg.outputs = [inp], [out]
    sg.name = "main"
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# ---------------------------------------------------------------- scales


def draw_scale(rng: np.random.Generator, lo: float = 1e-3, hi: float = 0.5) -> float:
    """A float32 scale, log-uniform in [lo, hi]."""
    return float(np.float32(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def inexact_filter_scale(rng: np.random.Generator, input_scale: float, lo: float = 2e-4, hi: float = 0.05) -> float:
    """A float32 filter scale whose float32 product with `input_scale` is off the exact (double) product by at
    least 0.4 float32 ulp: a multiplier taken from the float32 product is then off TFLM's by ~50 units."""
    best, best_err = draw_scale(rng, lo, hi), -1.0
    for _ in range(200):
        s = draw_scale(rng, lo, hi)
        p32 = np.float32(input_scale) * np.float32(s)
        err = abs(float(p32) - float(np.float32(input_scale)) * s) / float(np.spacing(p32))
        if err > best_err:
            best, best_err = s, err
        if err >= 0.4:
            break
    return best


# ---------------------------------------------------------------- the generator

W_STD = 73.0                        # std of int8 weights uniform in [-127, 127]


@dataclass
class Case:
    """One single-input single-output model to compare: a layer (its block from `cut`) or the whole model."""
    name: str
    kind: str
    model: bytes
    inputs: np.ndarray              # int8 [n, *input shape[1:]]


class RandomModel:
    """Draws one random int8 model layer by layer. `inputs` (int8, one row per test input) are the model's
    test inputs: tie biases are placed for input 0, and each layer's test inputs are tflite_micro's values of
    its cut tensor on them."""

    def __init__(self, rng: np.random.Generator, scale_class: str, n_inputs: int, tag: str = "m",
                 family: str = ""):
        assert scale_class in SCALE_CLASSES
        self.rng, self.scale_class, self.tag, self.family = rng, scale_class, tag, family
        self.g = Graph()
        self.n_inputs = n_inputs
        self._values: dict[int, np.ndarray] = {}
        self.est: dict[int, float] = {}        # tensor -> estimated std of its int8 values around the zero point

    # -- tensors, values
    def input(self, shape) -> int:
        t = self.g.act_tensor(shape, draw_scale(self.rng, 0.005, 0.1), int(self.rng.integers(-20, 21)))
        self.g.input = t
        from tinyexit.conformance import structured_inputs

        x = self.rng.integers(-128, 128, size=(self.n_inputs, *shape[1:])).astype(np.int8)
        edge = structured_inputs(tuple(shape[1:]), self.g.spec(t).zero_points[0], self.rng)
        x[1:1 + len(edge)] = edge[:self.n_inputs - 1]   # input 0 stays random: the tie biases aim at it
        self._values[t] = x
        self.est[t] = 74.0
        return t

    def values(self, t: int) -> np.ndarray:
        """tflite_micro's int8 values of tensor t on the test inputs (the oracle's own intermediate values)."""
        if t not in self._values:
            import tempfile
            from pathlib import Path

            from tinyexit.conformance import tflm_outputs

            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "prefix.tflite"
                p.write_bytes(self.g.serialize(t))
                out = tflm_outputs(p, self._values[self.g.input], arena_size=_tflm_arena(p))
            self._values[t] = out.reshape((self.n_inputs, *self.g.spec(t).shape[1:]))
        return self._values[t]

    def _out_quant(self, real_std: float, act: str) -> tuple[float, int]:
        """An output scale putting the values' std at 8-80 steps, and a zero point (low for ReLU-like)."""
        target = math.exp(self.rng.uniform(math.log(8), math.log(80)))
        scale = float(np.float32(max(real_std, 1e-9) / target))
        zp = int(self.rng.integers(-128, -60)) if act in ("RELU", "RELU6") and self.rng.random() < 0.7 \
            else int(self.rng.integers(-40, 41))
        return scale, zp

    def _layer(self, kind: str, y: int, cut: int, std_q: float) -> int:
        self.est[y] = std_q
        self.g.layers.append(Layer(f"{self.tag}_l{len(self.g.layers)}_{kind.lower()}", kind, y, cut))
        return y

    def _act(self, wide_range: bool = False) -> str:
        """A fused activation; `wide_range`: NONE or RELU only (room for the tie biases)."""
        if wide_range:
            return str(self.rng.choice(["NONE", "RELU"]))
        return str(self.rng.choice(list(ACTS), p=[0.4, 0.3, 0.2, 0.1]))

    def _weights(self, shape, sparse: bool) -> np.ndarray:
        w = self.rng.integers(-127, 128, size=shape).astype(np.int8)
        if sparse:
            w[self.rng.random(shape) < 0.85] = 0
        return w

    def _filter_scales(self, s_in: float, channels: int, per_channel: bool) -> tuple:
        def one():
            if self.scale_class == "loguniform":
                return draw_scale(self.rng, 2e-4, 0.05)
            return inexact_filter_scale(self.rng, s_in)
        return tuple(one() for _ in range(channels)) if per_channel else (one(),)

    def _bias(self, s_in: float, w_scales: tuple, channels: int, acc_std: float) -> tuple[np.ndarray, int]:
        b = np.round(self.rng.normal(0, 0.5 * acc_std, channels)).astype(np.int32)
        scales = tuple(float(np.float32(s_in) * np.float32(s)) for s in w_scales)
        t = self.g.add_tensor(TensorSpec((channels,), INT32, scales, (0,) * len(scales), data=b))
        return b, t

    # -- layers
    def fully_connected(self, x: int, out_d: int, *, per_channel: bool = False, sparse: bool = False) -> int:
        xs = self.g.spec(x)
        in_d = int(np.prod(xs.shape[1:]))
        s_in = xs.scales[0]
        act = self._act(wide_range=self.scale_class == "tie")
        w = self._weights((out_d, in_d), sparse)
        w_scales = self._filter_scales(s_in, out_d, per_channel)
        nz = max(1.0, float(np.mean(w != 0)) * in_d)
        acc_std = math.sqrt(nz) * self.est[x] * W_STD
        b, bt = self._bias(s_in, w_scales, out_d, acc_std)
        s_out, zp = self._out_quant(acc_std * s_in * float(np.median(w_scales)), act)
        if self.scale_class == "tie":
            # A small rescaling (2^-12 .. 2^-15): many accumulators per output step, so the tie biases get
            # close to a rounding boundary, and a large first-rounding value, so multiplier errors show.
            s_out = float(np.float32(s_in * float(np.median(w_scales)) * 2.0 ** self.rng.uniform(12, 15)))
        wt = self.g.add_tensor(TensorSpec((out_d, in_d), INT8, w_scales, (0,) * len(w_scales), 0, data=w))
        y = self.g.act_tensor((1, out_d), s_out, zp)
        if self.scale_class == "tie":
            self._tie_biases(x, w, b, w_scales, s_out, zp, act)
        o = fb.FullyConnectedOptionsT()
        o.fusedActivationFunction = ACTS[act]
        self.g.add_op(OpSpec(fb.BuiltinOperator.FULLY_CONNECTED, (x, wt, bt), (y,),
                             fb.BuiltinOptions.FullyConnectedOptions, o))
        return self._layer("FULLY_CONNECTED", y, x, 30.0)

    def _tie_biases(self, x: int, w: np.ndarray, b: np.ndarray, w_scales: tuple, s_out: float, zp: int,
                    act: str) -> None:
        """Move biases so that input 0's accumulators land next to a rounding boundary of TFLM's requantization
        (MultiplyByQuantizedMultiplier rounds twice: acc * M / 2^31 to an integer, then by 2^-e; a result goes
        up or down where the first rounding crosses half a unit below (above, for negatives) the second's
        tie). The accumulator is chosen on the exact rescaling acc * s_in * s_w / s_out, with the output inside
        its clamp: there a multiplier off by a few units of its 2^31 rounds the other way."""
        xs = self.g.spec(x)
        s_in, zp_in = xs.scales[0], xs.zero_points[0]
        x0 = self.values(x)[0].astype(np.int64).ravel() - zp_in
        dots = w.astype(np.int64) @ x0
        lo, hi = -110 - zp, 110 - zp                    # output steps from the zero point, inside int8
        if act in ("RELU", "RELU6"):
            lo = max(lo, 1)
        if act == "RELU6":
            hi = min(hi, int(6.0 / s_out) - 2)
        elif act == "RELU_N1_TO_1":
            lo, hi = max(lo, int(-1.0 / s_out) + 2), min(hi, int(1.0 / s_out) - 2)
        per_channel = len(w_scales) > 1
        channels = self.rng.permutation(len(b))[:8] if per_channel else np.arange(len(b))
        best = None
        for j in channels:
            if best is None or per_channel:
                r = float(np.float32(s_in)) * float(np.float32(w_scales[j if per_channel else 0])) \
                    / float(np.float32(s_out))
                best = _boundary_accumulators(r, lo, hi, self.rng)
            if best.size:
                b[j] = int(np.clip(int(self.rng.choice(best)) - int(dots[j]), -(1 << 31), (1 << 31) - 1))

    def conv(self, x: int, oc: int, k: tuple, stride: tuple, padding: str, *, per_channel: bool = True,
             sparse: bool = False, out_quant: tuple | None = None) -> int:
        return self._windowed(x, False, oc, k, stride, padding, 1, per_channel, sparse, out_quant)

    def depthwise(self, x: int, mult: int, k: tuple, stride: tuple, padding: str, *, per_channel: bool = True,
                  sparse: bool = False, out_quant: tuple | None = None) -> int:
        ic = self.g.spec(x).shape[3]
        return self._windowed(x, True, ic * mult, k, stride, padding, mult, per_channel, sparse, out_quant)

    def _windowed(self, x: int, depthwise: bool, oc: int, k: tuple, stride: tuple, padding: str, mult: int,
                  per_channel: bool, sparse: bool, out_quant: tuple | None) -> int:
        """CONV_2D (weights [oc, kh, kw, ic], scales on dimension 0) or DEPTHWISE_CONV_2D (weights
        [1, kh, kw, oc], scales on dimension 3); `out_quant`: (scale, zero point) of the output, else drawn."""
        xs = self.g.spec(x)
        _, h, w_, ic = xs.shape
        s_in = xs.scales[0]
        act = self._act()
        wts = self._weights((1, k[0], k[1], oc) if depthwise else (oc, k[0], k[1], ic), sparse)
        w_scales = self._filter_scales(s_in, oc, per_channel)
        taps = k[0] * k[1] * (1 if depthwise else ic)
        acc_std = math.sqrt(max(1.0, float(np.mean(wts != 0)) * taps)) * self.est[x] * W_STD
        b, bt = self._bias(s_in, w_scales, oc, acc_std)
        s_out, zp = out_quant or self._out_quant(acc_std * s_in * float(np.median(w_scales)), act)
        wt = self.g.add_tensor(TensorSpec(wts.shape, INT8, w_scales, (0,) * len(w_scales), 3 if depthwise else 0,
                                          data=wts))
        oh, ow = _out_hw(h, w_, k, stride, padding)
        y = self.g.act_tensor((1, oh, ow, oc), s_out, zp)
        o = fb.DepthwiseConv2DOptionsT() if depthwise else fb.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW = _PAD[padding], stride[0], stride[1]
        o.dilationHFactor = o.dilationWFactor = 1
        o.fusedActivationFunction = ACTS[act]
        if depthwise:
            o.depthMultiplier = mult
        kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        opts = fb.BuiltinOptions.DepthwiseConv2DOptions if depthwise else fb.BuiltinOptions.Conv2DOptions
        self.g.add_op(OpSpec(getattr(fb.BuiltinOperator, kind), (x, wt, bt), (y,), opts, o))
        return self._layer(kind, y, x, 30.0)

    def pool(self, x: int, kind: str, k: tuple, stride: tuple, padding: str) -> int:
        xs = self.g.spec(x)
        _, h, w_, c = xs.shape
        act = self._act()
        oh, ow = _out_hw(h, w_, k, stride, padding)
        y = self.g.act_tensor((1, oh, ow, c), xs.scales[0], xs.zero_points[0])   # TFLM: same quantization
        o = fb.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = _PAD[padding], *stride, *k
        o.fusedActivationFunction = ACTS[act]
        code = fb.BuiltinOperator.AVERAGE_POOL_2D if kind == "avg" else fb.BuiltinOperator.MAX_POOL_2D
        self.g.add_op(OpSpec(code, (x,), (y,), fb.BuiltinOptions.Pool2DOptions, o))
        return self._layer("AVERAGE_POOL_2D" if kind == "avg" else "MAX_POOL_2D", y, x, self.est[x])

    def add(self, a: int, b: int, cut: int) -> int:
        sa, sb = self.g.spec(a), self.g.spec(b)
        act = self._act()
        real = math.hypot(self.est[a] * sa.scales[0], self.est[b] * sb.scales[0])
        s_out, zp = self._out_quant(real, act)
        y = self.g.act_tensor(sa.shape, s_out, zp)
        o = fb.AddOptionsT()
        o.fusedActivationFunction = ACTS[act]
        self.g.add_op(OpSpec(fb.BuiltinOperator.ADD, (a, b), (y,), fb.BuiltinOptions.AddOptions, o))
        return self._layer("ADD", y, cut, 30.0)

    def concatenation(self, a: int, b: int, axis: int, cut: int) -> int:
        """TFLM copies the int8 bytes and requires every input's quantization to equal the output's."""
        sa, sb = self.g.spec(a), self.g.spec(b)
        assert (sa.scales, sa.zero_points) == (sb.scales, sb.zero_points)
        shape = list(sa.shape)
        shape[axis] += sb.shape[axis]
        y = self.g.act_tensor(shape, sa.scales[0], sa.zero_points[0])
        o = fb.ConcatenationOptionsT()
        o.axis = axis - 4 if self.rng.random() < 0.5 else axis
        self.g.add_op(OpSpec(fb.BuiltinOperator.CONCATENATION, (a, b), (y,),
                             fb.BuiltinOptions.ConcatenationOptions, o))
        return self._layer("CONCATENATION", y, cut, max(self.est[a], self.est[b]))

    def mean(self, x: int) -> int:
        xs = self.g.spec(x)
        _, h, w_, c = xs.shape
        keep = bool(self.rng.random() < 0.5)
        axes = self.g.const(np.array([1, 2] if self.rng.random() < 0.7 else [2, 1], np.int32))
        real = self.est[x] * xs.scales[0] / math.sqrt(h * w_) + 1e-9
        s_out, zp = self._out_quant(real * 3, "NONE")
        if self.rng.random() < 0.2:
            s_out, zp = xs.scales[0], xs.zero_points[0]      # same quantization in and out
        y = self.g.act_tensor((1, 1, 1, c) if keep else (1, c), s_out, zp)
        o = fb.ReducerOptionsT()
        o.keepDims = keep
        self.g.add_op(OpSpec(fb.BuiltinOperator.MEAN, (x, axes), (y,), fb.BuiltinOptions.ReducerOptions, o))
        return self._layer("MEAN", y, x, 20.0)

    def softmax(self, x: int) -> int:
        xs = self.g.spec(x)
        y = self.g.act_tensor(xs.shape, 1.0 / 256, -128)
        o = fb.SoftmaxOptionsT()
        o.beta = 1.0 if self.rng.random() < 0.6 else float(np.float32(self.rng.uniform(0.1, 4.0)))
        self.g.add_op(OpSpec(fb.BuiltinOperator.SOFTMAX, (x,), (y,), fb.BuiltinOptions.SoftmaxOptions, o))
        return self._layer("SOFTMAX", y, x, 30.0)

    def quantize(self, x: int) -> int:
        xs = self.g.spec(x)
        s_out = float(np.float32(xs.scales[0] * math.exp(self.rng.uniform(-1.5, 1.5))))
        y = self.g.act_tensor(xs.shape, s_out, int(self.rng.integers(-60, 61)))
        self.g.add_op(OpSpec(fb.BuiltinOperator.QUANTIZE, (x,), (y,)))
        return self._layer("QUANTIZE", y, x, self.est[x] * xs.scales[0] / s_out)

    def reshape(self, x: int, shape: tuple) -> int:
        xs = self.g.spec(x)
        st = self.g.const(np.array(shape, np.int32))
        y = self.g.act_tensor(shape, xs.scales[0], xs.zero_points[0])
        o = fb.ReshapeOptionsT()
        o.newShape = list(shape)
        self.g.add_op(OpSpec(fb.BuiltinOperator.RESHAPE, (x, st), (y,), fb.BuiltinOptions.ReshapeOptions, o))
        return self._layer("RESHAPE", y, x, self.est[x])

    # -- cases
    def cases(self) -> list[Case]:
        """One case per layer (its block from the cut tensor, fed tflite_micro's values there) and the whole
        model from its input."""
        out = [Case(la.name, la.kind, self.g.serialize(la.output, la.cut), self.values(la.cut))
               for la in self.g.layers]
        last = self.g.layers[-1].output
        out.append(Case(f"{self.tag}_whole", "WHOLE_MODEL", self.g.serialize(last), self._values[self.g.input]))
        return out


def _boundary_accumulators(r: float, lo: int, hi: int, rng, keep: int = 12) -> np.ndarray:
    """The `keep` accumulators in [lo / r, hi / r] (at most 2^20 of them, a random window) whose rescaled value
    lies closest to a rounding boundary of MultiplyByQuantizedMultiplier with multiplier ~ r, relative
    to its magnitude."""
    if r <= 0 or hi - lo < 2:
        return np.zeros(0, np.int64)
    a0, a1 = math.ceil(lo / r), math.floor(hi / r)
    if a1 - a0 > 1 << 20:
        a0 = int(rng.integers(a0, a1 - (1 << 20)))
        a1 = a0 + (1 << 20)
    acc = np.arange(a0, a1 + 1, dtype=np.int64)
    acc = acc[acc != 0]
    e = max(0, -math.frexp(r)[1])               # the second rounding divides by 2^e
    wv = acc.astype(np.float64) * (r * 2.0 ** e)  # first rounding's input, in its units (exact to ~2^-30)
    if e == 0:
        d = np.abs(np.mod(wv, 1.0) - 0.5)
    else:
        half = 2.0 ** (e - 1)
        d = np.abs(np.mod(np.where(wv > 0, wv + 0.5, wv - 0.5), 2.0 ** e) - half)
    score = d / np.abs(wv)                      # a multiplier error moves wv in proportion to wv
    return acc[np.argpartition(score, keep)[:keep]] if len(acc) > keep else acc


_PAD = {"same": fb.Padding.SAME, "valid": fb.Padding.VALID}


def _out_hw(h: int, w: int, k: tuple, stride: tuple, padding: str) -> tuple[int, int]:
    if padding == "same":
        return -(-h // stride[0]), -(-w // stride[1])
    return (h - k[0]) // stride[0] + 1, (w - k[1]) // stride[1] + 1


# ---------------------------------------------------------------- model families


def _window(rng, h: int, w: int) -> tuple:
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad = "valid" if rng.random() < 0.4 and k[0] <= h and k[1] <= w else "same"
    return k, stride, pad


def fc_stack(m: RandomModel, deep: bool) -> None:
    """Deep: 6-10 FULLY_CONNECTED layers (one may be wide); wide: 1-3 layers of 200-640 outputs."""
    rng = m.rng
    if rng.random() < 0.3:
        h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        x = m.input((1, h, w, int(rng.integers(1, 5))))
        x = m.reshape(x, (1, int(np.prod(m.g.spec(x).shape))))
    else:
        x = m.input((1, int(rng.integers(16, 321))))
    n = int(rng.integers(6, 11)) if deep else int(rng.integers(1, 4))
    wide_at = int(rng.integers(n)) if deep and rng.random() < 0.5 else -1
    for i in range(n):
        width = int(rng.integers(200, 641)) if (not deep or i == wide_at) else int(rng.integers(8, 97))
        x = m.fully_connected(x, width, per_channel=bool(rng.random() < 0.3), sparse=bool(rng.random() < 0.15))
        if rng.random() < 0.1:
            x = m.quantize(x)
    if rng.random() < 0.4 and m.g.spec(x).shape[-1] < 512:
        m.softmax(x)        # depth < 512: TFLM aborts when 512 or more inputs tie at the maximum


def conv_net(m: RandomModel) -> None:
    """A small image model: conv / depthwise / pooling / residual ADD / CONCATENATION / QUANTIZE blocks,
    then MEAN or RESHAPE, FULLY_CONNECTED and sometimes SOFTMAX."""
    rng = m.rng
    x = m.input((1, int(rng.integers(3, 11)), int(rng.integers(3, 11)), int(rng.integers(1, 7))))
    for _ in range(int(rng.integers(2, 6))):
        _, h, w, c = m.g.spec(x).shape
        kind = str(rng.choice(["conv", "dw", "avg", "max", "add", "concat", "quant"],
                              p=[0.25, 0.2, 0.1, 0.1, 0.15, 0.12, 0.08]))
        if kind == "conv":
            x = m.conv(x, int(rng.integers(1, 17)), *_window(rng, h, w), per_channel=bool(rng.random() < 0.8),
                       sparse=bool(rng.random() < 0.15))
        elif kind == "dw":
            x = m.depthwise(x, int(rng.choice([1, 1, 2])), *_window(rng, h, w),
                            per_channel=bool(rng.random() < 0.8), sparse=bool(rng.random() < 0.15))
        elif kind in ("avg", "max"):
            x = m.pool(x, kind, *_window(rng, h, w))
        elif kind == "add":
            b = m.conv(x, c, (int(rng.integers(1, 4)),) * 2, (1, 1), "same")
            x = m.add(x, b, x) if rng.random() < 0.5 else m.add(b, x, x)
        elif kind == "concat":
            a = m.conv(x, int(rng.integers(1, 9)), (1, 1), (1, 1), "same") if rng.random() < 0.6 else x
            qa = (m.g.spec(a).scales[0], m.g.spec(a).zero_points[0])
            b = m.depthwise(x, 1, (3, 3), (1, 1), "same", out_quant=qa) if a != x or rng.random() < 0.5 else \
                m.pool(x, "max", (3, 3), (1, 1), "same")
            same_c = m.g.spec(a).shape[3] == m.g.spec(b).shape[3]
            x = m.concatenation(a, b, int(rng.choice([3, 3, 1, 2])) if same_c else 3, x)
        else:
            x = m.quantize(x)
    _, h, w, c = m.g.spec(x).shape
    if rng.random() < 0.5:
        x = m.mean(x)
    else:
        x = m.reshape(x, (1, h * w * c))
    if rng.random() < 0.8:
        x = m.fully_connected(x, int(rng.integers(2, 33)), per_channel=bool(rng.random() < 0.3))
    if rng.random() < 0.5:
        m.softmax(x)


FAMILIES = ("fc_deep", "fc_wide", "conv")


def random_model(seed: int, n_inputs: int, family: str | None = None, scale_class: str | None = None) -> RandomModel:
    """Model number `seed`: its family and scale class drawn from the seed unless given."""
    rng = np.random.default_rng(seed)
    family = family or str(rng.choice(FAMILIES, p=[0.3, 0.25, 0.45]))
    scale_class = scale_class or str(rng.choice(SCALE_CLASSES, p=[0.4, 0.3, 0.3]))
    m = RandomModel(rng, scale_class, n_inputs, tag=f"s{seed}", family=family)
    if family == "conv":
        conv_net(m)
    else:
        fc_stack(m, deep=family == "fc_deep")
    return m


# ---------------------------------------------------------------- comparison


def _tflm_arena(path) -> int:
    """TFLM's arena for a random model: its weights' 10x guess plus 1 MiB for activations."""
    from pathlib import Path

    return 10 * Path(path).stat().st_size + (1 << 20)


@dataclass
class Comparison:
    same: dict                      # case name -> bool [n_inputs]: output identical to tflite_micro's
    kernel_files: list              # the library's kernel sources (tx_*.c): which kernels ran


def compare(cases: list[Case], workdir, kernels: str) -> Comparison:
    """Generate ONE library holding every case (kernel variant `kernels`), build it on the host, run every
    case on its inputs and on tflite_micro, and compare the outputs byte for byte."""
    from pathlib import Path

    from tinyexit.codegen import generate
    from tinyexit.conformance import build_host, run_host, tflm_outputs

    work = Path(workdir)
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    paths = {}
    for c in cases:
        p = models / f"{c.name}.tflite"
        p.write_bytes(c.model)
        paths[c.name] = p
    lib = work / f"lib_{kernels}"
    generate(paths, lib, kernels=kernels, measure=False, compare_tflm=False)
    exe = build_host(lib)
    same = {}
    for c in cases:
        want = tflm_outputs(paths[c.name], c.inputs, arena_size=_tflm_arena(paths[c.name]))
        got = run_host(exe, c.name, c.inputs, want.shape[1])
        same[c.name] = (got == want).all(axis=1)
    return Comparison(same, sorted(p.name for p in lib.glob("tx_*.c")))
