"""STRIDED_SLICE with all strides 1 (a box, e.g. the channel slice x[..., :32] of the exit heads)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import Op, OpContext, register
from tinyexit.codegen.ops._shape4 import pad4


@register
@dataclass(frozen=True, eq=False)
class StridedSlice(Op):
    in_dims: tuple[int, ...] = (1, 1, 1, 1)
    begin: tuple[int, ...] = (0, 0, 0, 0)
    size: tuple[int, ...] = (1, 1, 1, 1)

    name = "STRIDED_SLICE"
    kernel = "tx_slice"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "StridedSlice":
        x, y = ctx.tensor(0), ctx.out()
        ctx.require_int8(x, y)
        o = ctx.options
        rank = len(x.shape)
        if rank > 4:
            raise ctx.refuse(f"rank {rank} is not supported (at most 4)")
        if o.EllipsisMask() or o.NewAxisMask() or o.ShrinkAxisMask():
            raise ctx.refuse("ellipsis, new-axis and shrink-axis masks are not supported (only a box slice "
                             "such as x[..., :32] written with explicit begin/end)")
        if hasattr(o, "Offset") and o.Offset():
            raise ctx.refuse("the 'offset' form is not supported")
        consts = []
        for pos, what in ((1, "begin"), (2, "end"), (3, "strides")):
            t = ctx.tensor(pos)
            if t.data is None:
                raise ctx.refuse(f"{what} is not constant")
            consts.append([int(v) for v in np.asarray(t.data).ravel()])
        begin, end, strides = consts
        if any(s != 1 for s in strides):
            raise ctx.refuse(f"strides {strides} are not supported (only 1)")
        b_out, size = [], []
        for d in range(rank):
            n = int(x.shape[d])
            b = 0 if o.BeginMask() >> d & 1 else begin[d]
            e = n if o.EndMask() >> d & 1 else end[d]
            b = min(max(b + n if b < 0 else b, 0), n)
            e = min(max(e + n if e < 0 else e, 0), n)
            b_out.append(b)
            size.append(max(e - b, 0))
        if list(y.shape) != size:
            raise ctx.refuse(f"output shape {list(y.shape)} does not match the slice size {size}")
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],),
                   in_dims=pad4(x.shape), begin=pad4(b_out, 0), size=pad4(size))

    def inplace_inputs(self) -> tuple[int, ...]:
        # The box's j-th byte comes from input byte >= j, so a forward copy to the same start never
        # overwrites a byte it still has to read (the kernel uses memmove for overlapping rows).
        return (0,)

    def params_decl(self, prefix: str, inplace: bool) -> str:
        f = lambda v: "{" + ", ".join(str(int(x)) for x in v) + "}"  # noqa: E731
        return (f"static const tx_slice_params_t {prefix}_p = {{\n"
                f"  {f(self.in_dims)}, {f(self.begin)}, {f(self.size)}\n}};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"if (ub < ue) tx_slice_s8(&{prefix}_p, {ins[0]}, {out});"
