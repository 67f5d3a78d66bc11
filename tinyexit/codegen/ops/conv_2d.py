"""CONV_2D: int8 activations, int8 OHWI weights (per-channel or per-tensor), int32 bias."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tinyexit.codegen.ir import CArray, Graph, OpContext, register
from tinyexit.codegen.ops._common import (M4, WindowedConv, a4, check_channel_scales, m4_conv_work, m4_wide_work,
                                          rq_table)


def _i32(a: np.ndarray) -> np.ndarray:
    """int64 values as the int32 words C stores (two's complement wrap-around)."""
    a = np.asarray(a, np.int64) & 0xFFFFFFFF
    return np.where(a >= 1 << 31, a - (1 << 32), a)


@register
@dataclass(frozen=True, eq=False)
class Conv2D(WindowedConv):
    """Fields: WindowedConv's; weights [oc, kh, kw, ic]. `wide`: the cortex_m4 kernel reads the channel-pair
    stream of `wide_stream` (see with_wide_convs), which holds the layer's tables; otherwise `prepared`: the rq
    and beff tables are constants (tinyexit.codegen.prepared)."""
    prepared: bool = False
    wide: bool = False
    name = "CONV_2D"
    kernel = "tx_conv"

    @classmethod
    def from_tflite(cls, ctx: OpContext) -> "Conv2D":
        x, y, in_hwc, out_hwc, w = cls.read_io(ctx)
        ic, oc = in_hwc[2], out_hwc[2]
        if len(w.shape) != 4 or w.shape[0] != oc or w.shape[3] != ic:
            raise ctx.refuse(f"weights shape {list(w.shape)} does not fit input channels {ic} / output "
                             f"channels {oc} (grouped convolutions are not supported)")
        check_channel_scales(ctx, w, oc, 0)
        return cls(**cls.window_fields(ctx, x, y, w, in_hwc, out_hwc), weights=np.asarray(w.data, np.int8))

    def macs(self) -> int:
        oh, ow, oc = self.out_hwc
        return oh * ow * oc * self.kernel_hw[0] * self.kernel_hw[1] * self.in_hwc[2]

    def taps(self) -> int:
        """The patch length k = kh * kw * in_c."""
        return self.kernel_hw[0] * self.kernel_hw[1] * self.in_hwc[2]

    def wide_ok(self) -> bool:
        """Whether tx_conv_wpasses (cortex_m4, 4 pixels x 2 channels) computes every channel exactly: an even
        channel count, int8-wide activation range (SSAT is the clamp), and per channel the fast
        requantization of tx_rq_make (|acc| < 2^(30 - left) for |bias| + k * 255 * 128) with right shift in
        [1, 22] (the sign term is -1: `half + (acc >> 31)`) and lsh = left + 1 <= 8 (folded into the int16
        weight lanes: |w| << 8 <= 32768 still fits, -128 << 8 = -32768 included)."""
        oc, k = self.out_hwc[2], self.taps()
        if self.kernel != "tx_conv" or oc < 2 or oc % 2 or self.act != (-128, 127):
            return False
        for c, s in enumerate(self.shift):
            left, right = max(s, 0), max(-s, 0)
            bound = (abs(int(self.bias[c])) if self.bias is not None else 0) + k * 255 * 128
            if not 1 <= right <= 22 or left + 1 > 8 or bound >= 1 << (30 - left):
                return False
        return True

    def wide_stream(self) -> np.ndarray:
        """The int32 stream tx_conv_wpasses reads, per pair of output channels (c0, c1):
        - the accumulator starts (bias + input_offset * sum w) << lsh: the input offset folded in as the
          other kernels do (padding taps read the zero point -input_offset, which the fold cancels; int32
          wrap-around makes the order irrelevant), and the requantization's left shift lsh = left + 1
          applied in advance (exact: the bound keeps acc << lsh in int32);
        - per 4 patch entries j..j+3 (k padded with zero weights to kp = k rounded up to 4) two steps,
          (w0[j] , w0[j+2]) (w1[j], w1[j+2]) then (w0[j+1], w0[j+3]) (w1[j+1], w1[j+3]), each word two int16
          lanes (low first) of w << lsh: the lanes of SXTB16 and SXTB16 ROR 8 of an input word;
        - mult, half, right of c0, then of c1 (tx_rq_t's, zp << right in half)."""
        oc, k = self.out_hwc[2], self.taps()
        kp = a4(k)
        w = np.zeros((oc, kp), np.int64)
        w[:, :k] = np.asarray(self.weights, np.int64).reshape(oc, k)
        shift = np.asarray(self.shift if len(self.shift) == oc else self.shift * oc, np.int64)
        mult = np.asarray(self.mult if len(self.mult) == oc else self.mult * oc, np.int64)
        lsh = np.maximum(shift, 0) + 1
        right = np.maximum(-shift, 0)
        bias = np.zeros(oc, np.int64) if self.bias is None else np.asarray(self.bias, np.int64)
        beff = _i32((bias + self.input_offset * w.sum(axis=1)) << lsh)
        lanes = (w << lsh[:, None]) & 0xFFFF                                          # [oc, kp]
        q = lanes.reshape(oc, kp // 4, 4)
        steps = np.stack([q[:, :, 0] | q[:, :, 2] << 16, q[:, :, 1] | q[:, :, 3] << 16], axis=2)  # [oc, kp/4, 2]
        steps = steps.reshape(oc // 2, 2, kp // 2).transpose(0, 2, 1).reshape(oc // 2, kp)      # c0, c1 per step
        half = (1 << (right - 1)) + (self.output_offset << right)
        rq = np.stack([mult, half, right], axis=1).reshape(oc // 2, 6)
        table = np.concatenate([beff.reshape(oc // 2, 2), _i32(steps), rq], axis=1)
        return _i32(table).ravel()

    def work_bytes(self, kernels: str) -> int:
        if kernels != M4:
            return 0
        if self.wide:
            return m4_wide_work(self.taps(), self.out_hwc[2], self.kernel_hw == (1, 1))
        return m4_conv_work(self.taps(), self.out_hwc[2], False, self.prepared, self.kernel_hw == (1, 1))

    def work_offset(self, inplace: bool, kernels: str) -> int:
        # cortex_m4 tx_conv_s8 on a 1x1 (not wide) copies a pixel pair before writing it: no ring read, its
        # work space starts at the scratch (the reference kernel, the host build's, uses the ring alone).
        if kernels == M4 and not self.wide and self.kernel_hw == (1, 1):
            return 0
        return super().work_offset(inplace, kernels)

    def prepared_table(self) -> np.ndarray:
        """The cortex_m4 kernel's channel tables as one int32 constant: rq_table (out_c + 1 entries, as
        tx_conv_carve lays them), then beff[oc] = bias + input_offset * sum of the channel's weights
        (int32 wrap-around, as tx_conv_prepare computes it)."""
        oc = self.out_hwc[2]
        w = np.asarray(self.weights, np.int64).reshape(oc, -1).sum(axis=1)
        bias = np.zeros(oc, np.int64) if self.bias is None else np.asarray(self.bias, np.int64)
        return np.concatenate([rq_table(self.mult, self.shift, self.output_offset, oc + 1).ravel(),
                               _i32(bias + self.input_offset * w)])

    def constants(self, prefix: str) -> list[CArray]:
        own = [CArray("int32_t", f"{prefix}_wx", self.wide_stream())] if self.wide else []
        own += [CArray("int32_t", f"{prefix}_prep", self.prepared_table())] if self.prepared else []
        return super().constants(prefix) + own

    def params_decl(self, prefix: str, inplace: bool, add: str = "0", conv_is_in1: bool = True) -> str:
        tail = f", {add}, {int(conv_is_in1)}"
        if not self.wide:
            return self.params_struct(prefix, inplace, tail + f", {prefix + '_prep' if self.prepared else '0'}, 0")
        # The DSP build (the condition of cortex_m4/tx_conv.c.j2) reads only the stream: its struct holds no
        # pointer to the int8 weights, bias and multipliers, so the linker drops them from that image (the
        # unused array below only keeps them from being unused C); the host build's reference kernel reads them.
        names = [f"{prefix}_w", f"{prefix}_m", f"{prefix}_s"] + ([f"{prefix}_b"] if self.bias is not None else [])
        return ("#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(__ARM_BIG_ENDIAN)\n"
                f"static const void *const {prefix}_host[] __attribute__((unused)) = {{{', '.join(names)}}};\n"
                + self.params_struct(prefix, inplace, tail + f", 0, {prefix}_wx", arrays=False) + "\n#else\n"
                + self.params_struct(prefix, inplace, tail + f", 0, {prefix}_wx") + "\n#endif")  # unread here

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"tx_conv_s8(&{prefix}_p, {ins[0]}, {out}, {scratch}, 0, ub, ue);"


def with_wide_convs(graph: Graph) -> Graph:
    """The graph for the cortex_m4 kernels: every dense CONV_2D the wide routine computes exactly
    (Conv2D.wide_ok), also as the conv of a fused CONV_2D+ADD, carries its channel-pair stream
    (Conv2D.wide_stream) as a constant. Flash of the cortex_m4 image: 2 bytes per weight (k padded to 4) + 8
    words per channel pair, in place of the int8 weights, bias and multipliers (which only the host build's
    reference kernel reads; params_decl)."""
    def wide(op):
        if type(op) is Conv2D and op.wide_ok():
            return replace(op, wide=True)
        c = getattr(op, "conv", None)      # CONV_2D+ADD (tinyexit.codegen.ops.conv_add): its conv part
        if op.name == "CONV_2D+ADD" and type(c) is Conv2D and c.wide_ok():
            return replace(op, conv=replace(c, wide=True))
        return op
    return replace(graph, ops=tuple(wide(op) for op in graph.ops))
