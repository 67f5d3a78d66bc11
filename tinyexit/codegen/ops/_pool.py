"""Shared reading of AVERAGE_POOL_2D / MAX_POOL_2D (Pool2DOptions)."""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.codegen.ir import Op, OpContext, out_size, pads_same, padding_name
from tinyexit.codegen.ops._common import check_out_shape, nhwc
from tinyexit.codegen.quant import activation_range


@dataclass(frozen=True, eq=False)
class Pool2D(Op):
    in_hwc: tuple[int, int, int] = (0, 0, 0)
    out_hw: tuple[int, int] = (0, 0)
    kernel_hw: tuple[int, int] = (1, 1)
    stride_hw: tuple[int, int] = (1, 1)
    pad_tl: tuple[int, int] = (0, 0)
    act: tuple[int, int] = (-128, 127)

    c_func = ""

    @classmethod
    def from_tflite(cls, ctx: OpContext):
        o = ctx.options
        x, y = ctx.tensor(0), ctx.out()
        ctx.require_int8(x, y)
        if x.scale != y.scale or x.zero_point != y.zero_point:
            raise ctx.refuse("input and output quantization differ (TFLM requires them equal for pooling)")
        ih, iw, ic = nhwc(ctx, x)
        oh, ow, oc = nhwc(ctx, y)
        kh, kw = o.FilterHeight(), o.FilterWidth()
        sh, sw = o.StrideH(), o.StrideW()
        pad = padding_name(ctx)
        check_out_shape(ctx, (oh, ow, oc), (out_size(ih, sh, kh, pad), out_size(iw, sw, kw, pad), ic))
        return cls(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],),
                   in_hwc=(ih, iw, ic), out_hw=(oh, ow), kernel_hw=(kh, kw), stride_hw=(sh, sw),
                   pad_tl=(pads_same(ih, oh, sh, kh, pad), pads_same(iw, ow, sw, kw, pad)),
                   act=activation_range(ctx.activation(), y.scale, y.zero_point))

    def units(self) -> int:
        return self.out_hw[0]

    def params_decl(self, prefix: str, inplace: bool) -> str:
        ih, iw, ic = self.in_hwc
        return (f"static const tx_pool_params_t {prefix}_p = {{\n"
                f"  {ih}, {iw}, {ic}, {self.out_hw[0]}, {self.out_hw[1]}, {self.kernel_hw[0]}, "
                f"{self.kernel_hw[1]},\n"
                f"  {self.stride_hw[0]}, {self.stride_hw[1]}, {self.pad_tl[0]}, {self.pad_tl[1]}, "
                f"{self.act[0]}, {self.act[1]}\n}};")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"{self.c_func}(&{prefix}_p, {ins[0]}, {out}, ub, ue);"
