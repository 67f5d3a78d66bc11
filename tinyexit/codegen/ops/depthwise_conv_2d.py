"""DEPTHWISE_CONV_2D: any depth multiplier; weights [1, kh, kw, in_c * multiplier]."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import OpContext, register
from tinyexit.codegen.ops._common import M4, RQ_BYTES, WindowedConv, a4, check_channel_scales


@register
@dataclass(frozen=True, eq=False)
class DepthwiseConv2D(WindowedConv):
    """Fields: WindowedConv's (weights [kh, kw, oc]), the depth multiplier and where the input channels
    lie in memory: `in_pixel` bytes per input pixel (0: in_hwc[2], a plain input) and `in_channel`, the
    first one read (a fused channel slice, see SliceDepthwiseConv2D)."""
    depth_multiplier: int = 1
    in_pixel: int = 0
    in_channel: int = 0

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
        check_channel_scales(ctx, w, oc, 3)
        kh, kw = int(w.shape[1]), int(w.shape[2])
        return cls(**cls.window_fields(ctx, x, y, w, in_hwc, out_hwc), depth_multiplier=mult_ch,
                   weights=np.asarray(w.data, np.int8).reshape(kh, kw, oc))

    def macs(self) -> int:
        oh, ow, oc = self.out_hwc
        return oh * ow * oc * self.kernel_hw[0] * self.kernel_hw[1]

    def inplace_inputs(self) -> tuple[int, ...]:
        # A strided input (fused slice) is a wider tensor than the output: never overwritten.
        return () if self.in_pixel else super().inplace_inputs()

    def work_bytes(self, kernels: str) -> int:
        """tx_dw_carve: per group of 4 channels (depth multiplier 1) the 4 accumulator starts (bias with the
        input offset folded in) and the sign-extended weights (8 bytes per tap), rq[oc], one pixel of zero
        points and one pending pixel (in_c each, rounded up to 4)."""
        if kernels != M4 or self.kernel != "tx_dwconv":
            return 0
        groups = self.in_hwc[2] // 4 if self.depth_multiplier == 1 else 0
        taps = self.kernel_hw[0] * self.kernel_hw[1]
        return groups * (16 + 8 * taps) + RQ_BYTES * self.out_hwc[2] + 2 * a4(self.in_hwc[2])

    def multiplier_init(self) -> str:
        return f"{self.depth_multiplier}, {self.in_pixel or self.in_hwc[2]}, {self.in_channel}, "

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"{self.kernel}_s8(&{prefix}_p, {ins[0]}, {out}, {scratch}, ub, ue);"


@dataclass(frozen=True, eq=False)
class SliceDepthwiseConv2D(DepthwiseConv2D):
    """STRIDED_SLICE over the channel axis only (channels [in_channel, in_channel + in_hwc[2]) of an
    H x W x in_pixel map, stride 1) fused into the DEPTHWISE_CONV_2D that is its only reader: the depthwise
    reads the slice where it lies in the map, so the slice's copy is never made. Same bytes as the two ops
    (the slice only moves bytes). Not a TFLite op; created by `tinyexit.codegen.fuse`."""
    name = "STRIDED_SLICE+DEPTHWISE_CONV_2D"
