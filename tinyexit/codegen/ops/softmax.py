"""SOFTMAX int8 -> int8 (output scale 1/256, zero point -128): TFLM's fixed-point exp path (no LUT)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import Op, OpContext, register
from tinyexit.codegen.quant import softmax_params


@register
@dataclass(frozen=True, eq=False)
class Softmax(Op):
    outer: int = 1
    depth: int = 0
    input_multiplier: int = 0
    input_left_shift: int = 0
    diff_min: int = 0

    name = "SOFTMAX"
    kernel = "tx_softmax"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Softmax":
        x, y = ctx.tensor(0), ctx.out()
        ctx.require_int8(x, y)
        if y.zero_point != -128 or np.float32(y.scale) != np.float32(1.0 / 256):
            raise ctx.refuse(f"output quantization is scale {y.scale} / zero point {y.zero_point}; TFLM's int8 "
                             f"softmax needs 1/256 and -128")
        depth = int(x.shape[-1])
        mult, shift, diff_min = softmax_params(x.scale, ctx.options.Beta())
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],),
                   outer=x.elements // depth, depth=depth, input_multiplier=mult, input_left_shift=shift,
                   diff_min=diff_min)

    def inplace_inputs(self) -> tuple[int, ...]:
        return (0,)   # output c is written after the row's max and sum are known and reads only x[c]

    def params_decl(self, prefix: str, inplace: bool) -> str:
        return (f"static const tx_softmax_params_t {prefix}_p = {{\n"
                f"  {self.outer}, {self.depth}, {self.input_multiplier}, {self.input_left_shift}, "
                f"{self.diff_min}\n}};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"if (ub < ue) tx_softmax_s8(&{prefix}_p, {ins[0]}, {out});"
