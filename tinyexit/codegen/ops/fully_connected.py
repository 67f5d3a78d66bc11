"""FULLY_CONNECTED: int8 weights [out, in], per-channel or per-tensor scales (both: input x filter scale
product in double, like conv), int32 bias."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import CArray, Op, OpContext, register
from tinyexit.codegen.ops._common import const_bias, const_int8_weights, weight_constants
from tinyexit.codegen.quant import activation_range, conv_multipliers, fc_multiplier


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

    def constants(self, prefix: str) -> list[CArray]:
        return weight_constants(self, prefix)

    def params_decl(self, prefix: str, inplace: bool) -> str:
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
