"""PAD with constant zero (the output zero point), rank <= 4."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import Op, OpContext, register
from tinyexit.codegen.ops._shape4 import pad4


@register
@dataclass(frozen=True, eq=False)
class Pad(Op):
    in_dims: tuple[int, ...] = (1, 1, 1, 1)
    before: tuple[int, ...] = (0, 0, 0, 0)
    out_dims: tuple[int, ...] = (1, 1, 1, 1)
    pad_value: int = 0

    name = "PAD"
    kernel = "tx_pad"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Pad":
        x, y = ctx.tensor(0), ctx.out()
        ctx.require_int8(x, y)
        if x.scale != y.scale or x.zero_point != y.zero_point:
            raise ctx.refuse("input and output quantization differ")
        if len(x.shape) > 4:
            raise ctx.refuse(f"rank {len(x.shape)} is not supported (at most 4)")
        p = ctx.tensor(1)
        if p.data is None:
            raise ctx.refuse("the paddings are not constant")
        pads = np.asarray(p.data, np.int64).reshape(len(x.shape), 2)
        if (pads < 0).any():
            raise ctx.refuse("negative paddings are not supported")
        want = [int(d + a + b) for d, (a, b) in zip(x.shape, pads)]
        if list(y.shape) != want:
            raise ctx.refuse(f"output shape {list(y.shape)} does not match the computed {want}")
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],),
                   in_dims=pad4(x.shape), before=pad4([int(a) for a, _ in pads], 0), out_dims=pad4(y.shape),
                   pad_value=y.zero_point)

    def params_decl(self, prefix: str, inplace: bool) -> str:
        f = lambda v: "{" + ", ".join(str(int(x)) for x in v) + "}"  # noqa: E731
        return (f"static const tx_pad_params_t {prefix}_p = {{\n"
                f"  {f(self.in_dims)}, {f(self.before)}, {f(self.out_dims)}, {self.pad_value}\n}};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"if (ub < ue) tx_pad_s8(&{prefix}_p, {ins[0]}, {out});"
