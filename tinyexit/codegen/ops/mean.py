"""MEAN over the spatial axes (1, 2) of an NHWC tensor, as TFLM's int8 reference computes it: int32 sums,
then a requantization of sum - zero_point * count whose multiplier absorbs 1/count (QuantizedMeanOrSum).
TFLM takes this path even when input and output share one quantization (checked against tflite_micro)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import Op, OpContext, register
from tinyexit.codegen.ops._common import nhwc
from tinyexit.codegen.quant import quantize_multiplier


def mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """The output multiplier of QuantizedMeanOrSum with 1/count folded in (TFLM's integer reference)."""
    mult, shift = quantize_multiplier(float(np.float32(input_scale)) / float(np.float32(output_scale)))
    k = count.bit_length() - 1                      # 63 - clz64(count)
    k = min(k, 32, 31 + shift)
    return int((mult << k) // count), shift - k     # count > 0, mult >= 0: floor == C++ truncation


@register
@dataclass(frozen=True, eq=False)
class Mean(Op):
    in_hwc: tuple[int, int, int] = (0, 0, 0)
    mult: int = 0
    shift: int = 0
    input_zero_point: int = 0
    output_zero_point: int = 0

    name = "MEAN"
    kernel = "tx_mean"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Mean":
        x, y = ctx.tensor(0), ctx.out()
        ctx.require_int8(x, y)
        h, w, c = nhwc(ctx, x)
        axes_t = ctx.tensor(1)
        if axes_t.data is None:
            raise ctx.refuse("the axes are not constant")
        axes = sorted({int(a) % 4 for a in np.asarray(axes_t.data).ravel()})
        if axes != [1, 2]:
            raise ctx.refuse(f"reduction over axes {axes} is not supported (only the spatial axes [1, 2])")
        if y.elements != c:
            raise ctx.refuse(f"output has {y.elements} values, expected {c}")
        mult, shift = mean_multiplier(x.scale, y.scale, h * w)
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],), in_hwc=(h, w, c),
                   mult=mult, shift=shift, input_zero_point=x.zero_point,
                   output_zero_point=y.zero_point)

    def params_decl(self, prefix: str, inplace: bool) -> str:
        h, w, c = self.in_hwc
        return (f"static const tx_mean_params_t {prefix}_p = {{\n"
                f"  {h * w}, {c}, {self.mult}, {self.shift}, {self.input_zero_point}, "
                f"{self.output_zero_point}\n}};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"if (ub < ue) tx_mean_s8(&{prefix}_p, {ins[0]}, {out});"
