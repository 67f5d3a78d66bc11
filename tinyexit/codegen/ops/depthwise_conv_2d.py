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
    rows: bool = False      # cortex_m4: the 3x3 stride-1 row path reads rows_table (see with_widened_tables)

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

    def rows_ok(self) -> bool:
        """Whether the cortex_m4 row path (tx_dw_rows: 3x3, stride 1, per group of 4 channels a zero-point-
        padded copy of the input rows, assembly over pairs of output rows) computes every channel exactly:
        depth multiplier 1, and per channel the fast requantization with the left shift folded into the int16
        weight lanes as Conv2D.wide_ok states it (|acc| < 2^(30 - left) for |bias| + 9 * 255 * 128, right
        shift in [1, 22] (the sign term is -1: `half + (acc >> 31)`), lsh = left + 1 <= 8)."""
        if (self.kernel != "tx_dwconv" or self.depth_multiplier != 1 or tuple(self.kernel_hw) != (3, 3)
                or tuple(self.stride_hw) != (1, 1)):
            return False
        oc = self.out_hwc[2]
        for c in range(oc):
            s = self.shift[c] if len(self.shift) == oc else self.shift[0]
            left, right = max(s, 0), max(-s, 0)
            bound = (abs(int(self.bias[c])) if self.bias is not None else 0) + 9 * 255 * 128
            if not 1 <= right <= 22 or left + 1 > 8 or bound >= 1 << (30 - left):
                return False
        return True

    def rows_table(self) -> np.ndarray:
        """The int32 table tx_dw_rows reads: per group of 4 channels (c0..c3) 34 words, the accumulator starts
        beff << lsh (beff = bias + input_offset * sum_t w, the input offset folded in: a padding tap reads the
        zero point -input_offset; lsh = left + 1, the requantization's left shift applied in advance, exact
        under rows_ok's bound), per tap (ky, kx) the int16 lanes (w0, w2), (w1, w3) of w << lsh (SXTB16 and
        SXTB16 ROR 8 of an input word), then mult, half (zp << right included), right of c0..c3; then per
        channel past the last group 13 words: beff << lsh, the 9 taps' w << lsh, mult, half, right."""
        oc = self.out_hwc[2]
        g, tail = oc // 4, oc % 4
        w = np.asarray(self.weights, np.int64).reshape(9, oc)
        shift = np.asarray(self.shift if len(self.shift) == oc else tuple(self.shift) * oc, np.int64)
        mult = np.asarray(self.mult if len(self.mult) == oc else tuple(self.mult) * oc, np.int64)
        lsh, right = np.maximum(shift, 0) + 1, np.maximum(-shift, 0)
        bias = np.zeros(oc, np.int64) if self.bias is None else np.asarray(self.bias, np.int64)
        beff = (bias + self.input_offset * w.sum(axis=0)) << lsh
        ws = w << lsh[None, :]                                                             # [9, oc]
        half = (1 << (right - 1)) + (self.output_offset << right)
        rq = np.stack([mult, half, right], axis=1)                                         # [oc, 3]
        parts = []
        if g:
            lanes = (ws[:, :4 * g] & 0xFFFF).reshape(9, g, 4)
            w02 = lanes[:, :, 0] | lanes[:, :, 2] << 16                                   # [9, g]
            w13 = lanes[:, :, 1] | lanes[:, :, 3] << 16
            per_tap = np.stack([w02.T, w13.T], axis=2).reshape(g, 18)
            parts.append(np.concatenate([beff[:4 * g].reshape(g, 4), per_tap, rq[:4 * g].reshape(g, 12)], axis=1))
        for c in range(4 * g, 4 * g + tail):
            parts.append(np.concatenate([[beff[c]], ws[:, c], rq[c]])[None, :])
        table = np.concatenate([p.ravel() for p in parts]) & 0xFFFFFFFF
        return np.where(table >= 1 << 31, table - (1 << 32), table).astype(np.int64)

    def rows_work(self) -> int:
        """tx_dw_rows' work space: one group's copy of the 4 padded input rows of a pair of output rows,
        column-major (16 bytes per column: the group's word of each row), out_w + 2 columns, and a word of
        zero points (the source of rows outside the input)."""
        return 16 * (self.out_hwc[1] + 2) + 4

    def constants(self, prefix: str) -> list[CArray]:
        if self.rows:
            return super().constants(prefix) + [CArray("int32_t", f"{prefix}_rt", self.rows_table())]
        own = [CArray("int32_t", f"{prefix}_wx", self.widened_table())] if self.widened else []
        if self.prepared:
            own.append(CArray("int32_t", f"{prefix}_rq", rq_table(self.mult, self.shift, self.output_offset,
                                                                 self.out_hwc[2]).ravel()))
        return super().constants(prefix) + own

    def params_decl(self, prefix: str, inplace: bool) -> str:
        if self.kernel != "tx_dwconv":      # the sparse kernel's params struct has no group table
            return self.params_struct(prefix, inplace)
        return self.params_struct(prefix, inplace, tail=(f", {prefix}_wx" if self.widened else ", 0") +
                                  (f", {prefix}_rq" if self.prepared else ", 0") +
                                  (f", {prefix}_rt" if self.rows else ", 0"))

    def work_bytes(self, kernels: str) -> int:
        """tx_dw_carve: rq[oc] (not when `prepared`: a constant), one pixel of zero points and one pending
        pixel (in_c each, rounded up to 4); the group table is a constant (with_widened_tables)."""
        if kernels != M4 or self.kernel != "tx_dwconv":
            return 0
        if self.rows:
            return self.rows_work()
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


def with_widened_tables(graph: Graph, rows: bool = False) -> Graph:
    """The graph for the cortex_m4 kernels: every dense DEPTHWISE_CONV_2D with groups of 4 channels carries
    its group table (DepthwiseConv2D.widened_table) as a constant, so the kernel reads it from flash
    instead of building it in the arena at every call. With `rows` (the layer plan), a 3x3 stride-1 layer
    the row path computes exactly (rows_ok) carries the row path's table (rows_table) instead: more work
    space (3 padded rows), fewer cycles; the fused plans keep the group path."""
    def pick(op):
        if not isinstance(op, DepthwiseConv2D) or op.kernel != "tx_dwconv":
            return op
        if rows and op.rows_ok():
            return replace(op, rows=True)
        return replace(op, widened=True) if op.groups() else op
    return replace(graph, ops=tuple(pick(op) for op in graph.ops))
