"""CONV_2D: int8 activations, int8 OHWI weights (per-channel or per-tensor), int32 bias."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import CArray, Op, OpContext, register
from tinyexit.codegen.ops._common import WindowedConv, weight_constants


@register
@dataclass(frozen=True, eq=False)
class Conv2D(WindowedConv, Op):
    in_hwc: tuple[int, int, int] = (0, 0, 0)
    out_hwc: tuple[int, int, int] = (0, 0, 0)
    kernel_hw: tuple[int, int] = (1, 1)
    stride_hw: tuple[int, int] = (1, 1)
    pad_tl: tuple[int, int] = (0, 0)
    input_offset: int = 0
    output_offset: int = 0
    act: tuple[int, int] = (-128, 127)
    weights: np.ndarray = None          # [oc, kh, kw, ic] int8
    bias: np.ndarray | None = None      # [oc] int32
    mult: tuple[int, ...] = ()
    shift: tuple[int, ...] = ()

    name = "CONV_2D"
    kernel = "tx_conv"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Conv2D":
        x, y, in_hwc, out_hwc, w = cls.read_io(ctx)
        ic, oc = in_hwc[2], out_hwc[2]
        if len(w.shape) != 4 or w.shape[0] != oc or w.shape[3] != ic:
            raise ctx.refuse(f"weights shape {list(w.shape)} does not fit input channels {ic} / output "
                             f"channels {oc} (grouped convolutions are not supported)")
        if len(w.scales) not in (1, oc) or (len(w.scales) > 1 and w.quantized_dim != 0):
            raise ctx.refuse(f"weights have {len(w.scales)} scales on dimension {w.quantized_dim} for {oc} "
                             f"output channels (per-channel scales must be on dimension 0)")
        return cls(**cls.window_fields(ctx, x, y, w, in_hwc, out_hwc), weights=np.asarray(w.data, np.int8))

    def macs(self) -> int:
        oh, ow, oc = self.out_hwc
        return oh * ow * oc * self.kernel_hw[0] * self.kernel_hw[1] * self.in_hwc[2]

    def constants(self, prefix: str) -> list[CArray]:
        return weight_constants(self, prefix)

    def params_decl(self, prefix: str, inplace: bool, add: str = "0", conv_is_in1: bool = True) -> str:
        return self.params_struct(prefix, inplace, f", {add}, {int(conv_is_in1)}")

    def params_struct(self, prefix: str, inplace: bool, tail: str = "") -> str:
        """The `<kernel>_params_t` initializer; `tail`: fields after the multipliers (the fused ADD's)."""
        (ih, iw, ic), (oh, ow, oc) = self.in_hwc, self.out_hwc
        bias = f"{prefix}_b" if self.bias is not None else "0"
        return (f"static const {self.kernel}_params_t {prefix}_p = {{\n"
                f"  {ih}, {iw}, {ic}, {oh}, {ow}, {oc}, {self.kernel_hw[0]}, {self.kernel_hw[1]},\n"
                f"  {self.stride_hw[0]}, {self.stride_hw[1]}, {self.pad_tl[0]}, {self.pad_tl[1]}, "
                f"{self.ring_pixels(inplace)},\n"
                f"  {self.input_offset}, {self.output_offset}, {self.act[0]}, {self.act[1]},\n"
                f"  {self.weights_init(prefix)}, {bias}, {prefix}_m, {prefix}_s{tail}\n}};")

    def weights_init(self, prefix: str) -> str:
        """The params struct's weight field (the array of `constants`)."""
        return f"{prefix}_w"

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"tx_conv_s8(&{prefix}_p, {ins[0]}, {out}, {scratch}, 0, ub, ue);"
