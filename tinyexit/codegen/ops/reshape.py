"""RESHAPE: the output is the input's bytes; the planner gives both the same arena range (no code)."""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.codegen.ir import Op, OpContext, register


@register
@dataclass(frozen=True, eq=False)
class Reshape(Op):
    name = "RESHAPE"
    kernel = None

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Reshape":
        x, y = ctx.tensor(0), ctx.out()
        ctx.require_int8(x, y)
        if x.elements != y.elements:
            raise ctx.refuse(f"input has {x.elements} values but the output {y.elements}")
        if x.scale != y.scale or x.zero_point != y.zero_point:
            raise ctx.refuse("input and output quantization differ")
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],))

    def is_alias(self) -> bool:
        return True

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return "/* RESHAPE: output shares the input's arena range */"
