"""DEPTHWISE_CONV_2D: any depth multiplier; weights [1, kh, kw, in_c * multiplier]."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import CArray, Op, OpContext, register
from tinyexit.codegen.ops._common import WindowedConv, weight_constants


@register
@dataclass(frozen=True, eq=False)
class DepthwiseConv2D(WindowedConv, Op):
    in_hwc: tuple[int, int, int] = (0, 0, 0)
    out_hwc: tuple[int, int, int] = (0, 0, 0)
    depth_multiplier: int = 1
    kernel_hw: tuple[int, int] = (1, 1)
    stride_hw: tuple[int, int] = (1, 1)
    pad_tl: tuple[int, int] = (0, 0)
    input_offset: int = 0
    output_offset: int = 0
    act: tuple[int, int] = (-128, 127)
    weights: np.ndarray = None          # [kh, kw, oc] int8
    bias: np.ndarray | None = None
    mult: tuple[int, ...] = ()
    shift: tuple[int, ...] = ()

    name = "DEPTHWISE_CONV_2D"
    kernel = "tx_dwconv"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "DepthwiseConv2D":
        x, y, in_hwc, out_hwc, w = cls.read_io(ctx)
        ic, oc = in_hwc[2], out_hwc[2]
        if len(w.shape) != 4 or w.shape[0] != 1 or w.shape[3] != oc or oc % ic != 0:
            raise ctx.refuse(f"weights shape {list(w.shape)} does not fit {ic} input / {oc} output channels")
        mult_ch = oc // ic
        if ctx.options.DepthMultiplier() not in (0, mult_ch):
            raise ctx.refuse(f"depth_multiplier option {ctx.options.DepthMultiplier()} disagrees with the shapes ({mult_ch})")
        if len(w.scales) not in (1, oc) or (len(w.scales) > 1 and w.quantized_dim != 3):
            raise ctx.refuse(f"weights have {len(w.scales)} scales on dimension {w.quantized_dim} for {oc} "
                             f"output channels (per-channel scales must be on dimension 3)")
        kh, kw = int(w.shape[1]), int(w.shape[2])
        return cls(**cls.window_fields(ctx, x, y, w, in_hwc, out_hwc), depth_multiplier=mult_ch,
                   weights=np.asarray(w.data, np.int8).reshape(kh, kw, oc))

    def macs(self) -> int:
        oh, ow, oc = self.out_hwc
        return oh * ow * oc * self.kernel_hw[0] * self.kernel_hw[1]

    def constants(self, prefix: str) -> list[CArray]:
        return weight_constants(self, prefix)

    def params_decl(self, prefix: str, inplace: bool) -> str:
        (ih, iw, ic), (oh, ow, oc) = self.in_hwc, self.out_hwc
        bias = f"{prefix}_b" if self.bias is not None else "0"
        return (f"static const {self.kernel}_params_t {prefix}_p = {{\n"
                f"  {ih}, {iw}, {ic}, {oh}, {ow}, {oc}, {self.depth_multiplier}, "
                f"{self.kernel_hw[0]}, {self.kernel_hw[1]},\n"
                f"  {self.stride_hw[0]}, {self.stride_hw[1]}, {self.pad_tl[0]}, {self.pad_tl[1]}, "
                f"{self.ring_pixels(inplace)},\n"
                f"  {self.input_offset}, {self.output_offset}, {self.act[0]}, {self.act[1]},\n"
                f"  {self.weights_init(prefix)}, {bias}, {prefix}_m, {prefix}_s\n}};")

    def weights_init(self, prefix: str) -> str:
        """The params struct's weight field (the array of `constants`)."""
        return f"{prefix}_w"

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"{self.kernel}_s8(&{prefix}_p, {ins[0]}, {out}, {scratch}, ub, ue);"
