"""CONCATENATION of int8 activations along any axis (TFLM copies bytes: no requantization, and its Prepare
requires every input's scale and zero point to equal the output's; checked against tflite_micro)."""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.codegen.ir import Op, OpContext, register

MAX_INPUTS = 10


@register
@dataclass(frozen=True, eq=False)
class Concatenation(Op):
    outer: int = 1
    copy_bytes: tuple[int, ...] = ()

    name = "CONCATENATION"
    kernel = "tx_concat"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Concatenation":
        y = ctx.out()
        xs = [ctx.tensor(i) for i in range(len(ctx.inputs))]
        ctx.require_int8(y, *xs)
        if ctx.activation() != "NONE":
            raise ctx.refuse("a fused activation is not supported on CONCATENATION")
        if not 1 <= len(xs) <= MAX_INPUTS:
            raise ctx.refuse(f"{len(xs)} inputs are not supported (at most {MAX_INPUTS})")
        rank = len(y.shape)
        axis = ctx.options.Axis() % rank
        outer = 1
        for d in y.shape[:axis]:
            outer *= int(d)
        copies = []
        for x in xs:
            if x.is_constant:
                raise ctx.refuse(f"input '{x.name}' is a constant")
            if len(x.shape) != rank:
                raise ctx.refuse("inputs of different ranks")
            if (x.scale, x.zero_point) != (y.scale, y.zero_point):
                raise ctx.refuse(f"input '{x.name}' is quantized (scale {x.scale:g}, zero point {x.zero_point}) "
                                 f"unlike the output (scale {y.scale:g}, zero point {y.zero_point}); TFLM "
                                 f"requires them equal (requantize the input with a QUANTIZE op first)")
            inner = 1
            for d in x.shape[axis:]:
                inner *= int(d)
            copies.append(inner)
        if outer * sum(copies) != y.elements:
            raise ctx.refuse("input shapes do not add up to the output shape")
        return cls(index=ctx.index, inputs=tuple(ctx.inputs), outputs=(ctx.outputs[0],), outer=outer,
                   copy_bytes=tuple(copies))

    def params_decl(self, prefix: str, inplace: bool) -> str:
        sizes = ", ".join(str(c) for c in self.copy_bytes)
        return (f"static const uint32_t {prefix}_c[{len(self.copy_bytes)}] = {{{sizes}}};\n"
                f"static const tx_concat_params_t {prefix}_p = {{ {len(self.copy_bytes)}, {self.outer}, "
                f"{prefix}_c }};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return (f"{{ const int8_t *const in_[{len(ins)}] = {{{', '.join(ins)}}};\n"
                f"      if (ub < ue) tx_concat_s8(&{prefix}_p, in_, {out}); }}")
