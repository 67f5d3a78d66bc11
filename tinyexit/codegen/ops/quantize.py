"""QUANTIZE from int8 to int8: a requantization to another scale / zero point (the converter emits it where
learned ranges meet, e.g. after a pooling layer of a quantization-aware-trained model). TFLM reference
arithmetic: out = clamp(MultiplyByQuantizedMultiplier(in - in_zp, M, shift) + out_zp, -128, 127) with
M, shift = QuantizeMultiplier(double(input_scale) / double(output_scale))."""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.codegen.ir import Op, OpContext, register
from tinyexit.codegen.quant import quantize_multiplier


@register
@dataclass(frozen=True, eq=False)
class Quantize(Op):
    size: int = 0
    input_offset: int = 0
    mult: int = 0
    shift: int = 0
    output_offset: int = 0

    name = "QUANTIZE"
    kernel = "tx_requant"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Quantize":
        x, y = ctx.tensor(0), ctx.out()
        if x.dtype != "int8" or y.dtype != "int8":
            raise ctx.refuse(f"only int8 -> int8 requantization is supported (this one is {x.dtype} -> "
                             f"{y.dtype}); convert with int8 input and output (inference_input_type = tf.int8)")
        ctx.require_int8(x, y)
        if x.elements != y.elements:
            raise ctx.refuse(f"input has {x.elements} values but the output {y.elements}")
        mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],), size=y.elements,
                   input_offset=-x.zero_point, mult=mult, shift=shift, output_offset=y.zero_point)

    def inplace_inputs(self) -> tuple[int, ...]:
        return (0,)     # element i is read before element i of the output is written

    def params_decl(self, prefix: str, inplace: bool) -> str:
        return (f"static const tx_requant_params_t {prefix}_p = {{\n"
                f"  {self.size}, {self.input_offset}, {self.mult}, {self.shift}, {self.output_offset}\n}};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"if (ub < ue) tx_requant_s8(&{prefix}_p, {ins[0]}, {out});"
