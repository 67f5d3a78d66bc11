"""MEAN over the spatial axes (1, 2) of an NHWC tensor, as TFLM's reference QuantizedMeanOrSum computes it
(int32 sums, then float32 scaling and rounding)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.cformat import c_float
from tinyexit.codegen.ir import Op, OpContext, register
from tinyexit.codegen.ops._common import nhwc


@register
@dataclass(frozen=True, eq=False)
class Mean(Op):
    in_hwc: tuple[int, int, int] = (0, 0, 0)
    scale: float = 1.0        # float32 input_scale / output_scale
    bias: float = 0.0         # float32 -input_zero_point * scale
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
        scale = np.float32(x.scale) / np.float32(y.scale)
        bias = np.float32(-x.zero_point) * scale
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],),
                   in_hwc=(h, w, c), scale=float(scale), bias=float(bias), output_zero_point=y.zero_point)

    def params_decl(self, prefix: str, inplace: bool) -> str:
        h, w, c = self.in_hwc
        return (f"static const tx_mean_params_t {prefix}_p = {{\n"
                f"  {h * w}, {c}, {c_float(self.scale)}, {c_float(self.bias)}, {self.output_zero_point}\n}};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"if (ub < ue) tx_mean_s8(&{prefix}_p, {ins[0]}, {out});"
