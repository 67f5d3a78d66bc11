"""FULLY_CONNECTED: int8 weights [out, in], per-channel or per-tensor scales (both: input x filter scale
product in double, like conv), int32 bias.

What the dense kernels (tx_fc, reference and cortex_m4) read is prepared here, at generation time: the weights
in blocks of ROWS output rows (`block_layout`: each group of 4 inputs of the block's rows is contiguous, so one
widened input word serves ROWS rows), the input offset folded into the bias (`folded_bias`), and whether
every accumulator is bounded for the cortex_m4 fast requantization (`needs_exact`). The sparse form
(tinyexit.codegen.sparse) keeps the original bias and offset (`unfolded_params_decl`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.features import rq_needs_exact
from tinyexit.codegen.ir import CArray, Op, OpContext, register
from tinyexit.codegen.ops._common import const_bias, const_int8_weights
from tinyexit.codegen.quant import activation_range, conv_multipliers, fc_multiplier

ROWS = 4    # output rows per weight block (tx_fc_s8: tx_fc_rows4 runs 4 rows at a time)


def block_layout(w: np.ndarray, rows: int = ROWS) -> np.ndarray:
    """int8 [out, in] -> the flat order tx_fc_s8 reads (tx_kernels.h): per block of `rows` rows (the last
    block: the rest), for each group of 4 inputs the block's rows' 4 weights one after the other, then each
    row's in % 4 last weights. Same bytes, reordered: no flash cost."""
    w = np.asarray(w, np.int8)
    out_d, n = w.shape
    n4 = n // 4 * 4
    parts = []
    for o in range(0, out_d, rows):
        blk = w[o:o + rows]
        parts.append(blk[:, :n4].reshape(len(blk), n4 // 4, 4).transpose(1, 0, 2).ravel())
        parts.append(blk[:, n4:].ravel())
    return np.concatenate(parts) if parts else w.ravel()


def folded_bias(w: np.ndarray, bias: np.ndarray | None, input_offset: int) -> np.ndarray:
    """bias + input_offset * sum_j w[o][j] per row, wrapped to int32 like the kernels' arithmetic:
    sum_j x[j] * w[o][j] + this = TFLM's sum_j (x[j] + input_offset) * w[o][j] + bias (mod 2^32)."""
    b = np.zeros(w.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    v = b + int(input_offset) * np.asarray(w, np.int64).sum(axis=1)
    return ((v + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _check_bias_scale(ctx: OpContext, product_scale: float, output_scale: float) -> None:
    """Per-tensor FULLY_CONNECTED: TFLM's Prepare (GetQuantizedConvolutionMultipler) refuses a bias whose scale
    is off input x filter scale by more than 0.02 output steps (in double; checked against tflite_micro)."""
    if len(ctx.inputs) <= 2 or ctx.inputs[2] < 0:
        return
    b = ctx.tensor(2)
    if abs(product_scale - b.scale) / output_scale > 0.02:
        raise ctx.refuse(f"bias scale {b.scale:g} is not input x weight scale {product_scale:g} (TFLM refuses "
                         f"more than 0.02 output steps off): requantize the bias")


@register
@dataclass(frozen=True, eq=False)
class FullyConnected(Op):
    batches: int = 1
    in_depth: int = 0
    out_depth: int = 0
    input_offset: int = 0
    output_offset: int = 0
    mult: tuple[int, ...] = ()         # one entry (per-tensor) or out_depth entries (per-channel)
    shift: tuple[int, ...] = ()
    act: tuple[int, int] = (-128, 127)
    weights: np.ndarray = None
    bias: np.ndarray | None = None

    name = "FULLY_CONNECTED"
    kernel = "tx_fc"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "FullyConnected":
        o = ctx.options
        if o is not None and o.WeightsFormat() != 0:
            raise ctx.refuse("shuffled weights format is not supported")
        x, y = ctx.tensor(0), ctx.out()
        ctx.require_int8(x, y)
        w = const_int8_weights(ctx, 1)
        if len(w.shape) != 2:
            raise ctx.refuse(f"weights shape {list(w.shape)} is not 2-D")
        out_d, in_d = int(w.shape[0]), int(w.shape[1])
        if len(w.scales) not in (1, out_d) or (len(w.scales) > 1 and w.quantized_dim != 0):
            raise ctx.refuse(f"weights have {len(w.scales)} scales on dimension {w.quantized_dim} for {out_d} "
                             f"outputs")
        if x.elements % in_d != 0 or y.elements != (x.elements // in_d) * out_d:
            raise ctx.refuse(f"input of {x.elements} values does not fit weights {list(w.shape)}")
        if len(w.scales) > 1:
            mult, shift = conv_multipliers(x.scale, w.scales, y.scale, out_d)
        else:
            m, sh = fc_multiplier(x.scale, w.scale, y.scale)
            mult, shift = [m], [sh]
            _check_bias_scale(ctx, x.scale * w.scale, y.scale)
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],),
                   batches=x.elements // in_d, in_depth=in_d, out_depth=out_d,
                   input_offset=-x.zero_point, output_offset=y.zero_point, mult=tuple(mult), shift=tuple(shift),
                   act=activation_range(ctx.activation(), y.scale, y.zero_point),
                   weights=np.asarray(w.data, np.int8), bias=const_bias(ctx, 2, out_d))

    def macs(self) -> int:
        return self.batches * self.in_depth * self.out_depth

    def needs_exact(self) -> bool:
        """True when some row's accumulator may be too large for the fast requantization of the cortex_m4
        kernel (tx_rq_make's bound |bias| + in_depth * 255 * 128, on the original bias)."""
        rows = range(self.out_depth)
        bias = self.bias if self.bias is not None else np.zeros(self.out_depth, np.int64)
        return any(rq_needs_exact(self.mult[o if len(self.mult) > 1 else 0], self.shift[o if len(self.shift) > 1 else 0],
                                  abs(int(bias[o])) + self.in_depth * 255 * 128) for o in rows)

    def constants(self, prefix: str) -> list[CArray]:
        """Blocked weights, multipliers, shifts and the folded bias (present even when the model has none:
        4 bytes per output row then)."""
        return ([CArray("int8_t", f"{prefix}_w", block_layout(self.weights)),
                 CArray("int32_t", f"{prefix}_m", np.array(self.mult, np.int64)),
                 CArray("int8_t", f"{prefix}_s", np.array(self.shift, np.int64)),
                 CArray("int32_t", f"{prefix}_b", folded_bias(self.weights, self.bias, self.input_offset))])

    def params_decl(self, prefix: str, inplace: bool) -> str:
        return (f"static const {self.kernel}_params_t {prefix}_p = {{\n"
                f"  {self.batches}, {self.in_depth}, {self.out_depth},\n"
                f"  {self.output_offset}, {self.act[0]}, {self.act[1]}, {int(len(self.mult) > 1)}, "
                f"{int(self.needs_exact())},\n"
                f"  {prefix}_w, {prefix}_b, {prefix}_m, {prefix}_s\n}};")

    def unfolded_params_decl(self, prefix: str) -> str:
        """The params of a kernel reading x + input_offset and the original bias (tx_sparse_fc)."""
        bias = f"{prefix}_b" if self.bias is not None else "0"
        return (f"static const {self.kernel}_params_t {prefix}_p = {{\n"
                f"  {self.batches}, {self.in_depth}, {self.out_depth},\n"
                f"  {self.input_offset}, {self.output_offset}, {self.act[0]}, {self.act[1]}, "
                f"{int(len(self.mult) > 1)},\n"
                f"  {self.weights_init(prefix)}, {bias}, {prefix}_m, {prefix}_s\n}};")

    def weights_init(self, prefix: str) -> str:
        """The params struct's weight field (the array of `constants`)."""
        return f"{prefix}_w"

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"if (ub < ue) {self.kernel}_s8(&{prefix}_p, {ins[0]}, {out});"
