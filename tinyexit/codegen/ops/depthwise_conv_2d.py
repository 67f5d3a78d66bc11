"""DEPTHWISE_CONV_2D: any depth multiplier; weights [1, kh, kw, in_c * multiplier]."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tinyexit.codegen.ir import CArray, Graph, OpContext, register
from tinyexit.codegen.ops._common import M4, RQ_BYTES, WindowedConv, a4, check_channel_scales, rq_table


@register
@dataclass(frozen=True, eq=False)
class DepthwiseConv2D(WindowedConv):
    """Fields: WindowedConv's (weights [kh, kw, oc]), the depth multiplier and where the input channels
    lie in memory: `in_pixel` bytes per input pixel (0: in_hwc[2], a plain input) and `in_channel`, the
    first one read (a fused channel slice, see SliceDepthwiseConv2D)."""
    depth_multiplier: int = 1
    in_pixel: int = 0
    in_channel: int = 0
    widened: bool = False   # cortex_m4: the group table (widened_table) is a constant (see with_widened_tables)
    prepared: bool = False  # cortex_m4: the rq table is a constant (tinyexit.codegen.prepared)

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

    def groups(self) -> int:
        """Groups of 4 channels the cortex_m4 kernel runs with SIMD lanes (depth multiplier 1)."""
        return self.in_hwc[2] // 4 if self.depth_multiplier == 1 else 0

    def widened_table(self) -> np.ndarray:
        """The cortex_m4 group table, int32 [groups][4 + 2 * taps]: the 4 accumulator starts
        beff = bias + input_offset * sum_t w (int32 wrap-around, as the reference's sum wraps; a padding tap
        reads the zero point -input_offset and adds -input_offset * w, which beff's term cancels), then per
        tap the weight lanes (w0, w2) and (w1, w3) as int16 pairs, low lane first, matching SXTB16 and
        SXTB16 ROR 8 of an input word."""
        g, taps = self.groups(), self.kernel_hw[0] * self.kernel_hw[1]
        w = np.asarray(self.weights, np.int64).reshape(taps, -1)[:, :4 * g]                 # [taps, 4g]
        bias = np.zeros(4 * g, np.int64) if self.bias is None else np.asarray(self.bias, np.int64)[:4 * g]
        beff = (bias + self.input_offset * w.sum(axis=0)).reshape(g, 4)
        lanes = (w & 0xFFFF).reshape(taps, g, 4)
        w02 = lanes[:, :, 0] | lanes[:, :, 2] << 16                                       # [taps, g]
        w13 = lanes[:, :, 1] | lanes[:, :, 3] << 16
        per_tap = np.stack([w02.T, w13.T], axis=2).reshape(g, 2 * taps)                    # [g, 2 taps]
        table = np.concatenate([beff, per_tap], axis=1) & 0xFFFFFFFF
        return np.where(table >= 1 << 31, table - (1 << 32), table).astype(np.int64)

    def constants(self, prefix: str) -> list[CArray]:
        own = [CArray("int32_t", f"{prefix}_wx", self.widened_table())] if self.widened else []
        if self.prepared:
            own.append(CArray("int32_t", f"{prefix}_rq", rq_table(self.mult, self.shift, self.output_offset,
                                                                 self.out_hwc[2]).ravel()))
        return super().constants(prefix) + own

    def params_decl(self, prefix: str, inplace: bool) -> str:
        if self.kernel != "tx_dwconv":      # the sparse kernel's params struct has no group table
            return self.params_struct(prefix, inplace)
        return self.params_struct(prefix, inplace, tail=(f", {prefix}_wx" if self.widened else ", 0") +
                                  (f", {prefix}_rq" if self.prepared else ", 0"))

    def work_bytes(self, kernels: str) -> int:
        """tx_dw_carve: rq[oc] (not when `prepared`: a constant), one pixel of zero points and one pending
        pixel (in_c each, rounded up to 4); the group table is a constant (with_widened_tables)."""
        if kernels != M4 or self.kernel != "tx_dwconv":
            return 0
        return (0 if self.prepared else RQ_BYTES * self.out_hwc[2]) + 2 * a4(self.in_hwc[2])

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


def with_widened_tables(graph: Graph) -> Graph:
    """The graph for the cortex_m4 kernels: every dense DEPTHWISE_CONV_2D with groups of 4 channels carries
    its group table (DepthwiseConv2D.widened_table) as a constant, so the kernel reads it from flash
    instead of building it in the arena at every call."""
    ops = tuple(replace(op, widened=True) if isinstance(op, DepthwiseConv2D) and op.kernel == "tx_dwconv"
                and op.groups() else op for op in graph.ops)
    return replace(graph, ops=ops)
