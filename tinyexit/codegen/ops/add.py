"""ADD of two int8 tensors of the same shape (TFLM's left_shift = 20 rescaling)."""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.codegen.ir import Op, OpContext, register
from tinyexit.codegen.quant import activation_range, add_params


@register
@dataclass(frozen=True, eq=False)
class Add(Op):
    size: int = 0
    in1_offset: int = 0
    in2_offset: int = 0
    left_shift: int = 20
    m1: tuple[int, int] = (0, 0)
    m2: tuple[int, int] = (0, 0)
    mo: tuple[int, int] = (0, 0)
    output_offset: int = 0
    act: tuple[int, int] = (-128, 127)

    name = "ADD"
    kernel = "tx_add"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Add":
        a, b, y = ctx.tensor(0), ctx.tensor(1), ctx.out()
        ctx.require_int8(a, b, y)
        for t in (a, b):
            if t.is_constant:
                raise ctx.refuse(f"operand '{t.name}' is a constant; only two activation operands are supported")
        if tuple(a.shape) != tuple(b.shape) or a.elements != y.elements:
            raise ctx.refuse(f"operand shapes {list(a.shape)} and {list(b.shape)} differ (broadcasting is not "
                             f"supported)")
        left_shift, m1, m2, mo = add_params(a.scale, b.scale, y.scale)
        return cls(index=ctx.index, inputs=(ctx.inputs[0], ctx.inputs[1]), outputs=(ctx.outputs[0],),
                   size=y.elements, in1_offset=-a.zero_point, in2_offset=-b.zero_point, left_shift=left_shift,
                   m1=m1, m2=m2, mo=mo, output_offset=y.zero_point,
                   act=activation_range(ctx.activation(), y.scale, y.zero_point))

    def inplace_inputs(self) -> tuple[int, ...]:
        return (0, 1)   # element i is read from both inputs before element i of the output is written

    def params_decl(self, prefix: str, inplace: bool, table: str = "0") -> str:
        # table: a fused ADD's prepared input tables (tinyexit.codegen.ops.conv_add), else 0
        return (f"static const tx_add_params_t {prefix}_p = {{\n"
                f"  {self.size}, {self.in1_offset}, {self.in2_offset}, {self.left_shift},\n"
                f"  {self.m1[0]}, {self.m1[1]}, {self.m2[0]}, {self.m2[1]}, {self.mo[0]}, {self.mo[1]},\n"
                f"  {self.output_offset}, {self.act[0]}, {self.act[1]}, {table}\n}};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"if (ub < ue) tx_add_s8(&{prefix}_p, {ins[0]}, {ins[1]}, {out});"
