"""CONV_2D: int8 activations, int8 OHWI weights (per-channel or per-tensor), int32 bias."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import CArray, OpContext, register
from tinyexit.codegen.ops._common import M4, WindowedConv, check_channel_scales, m4_conv_work, rq_table


@register
@dataclass(frozen=True, eq=False)
class Conv2D(WindowedConv):
    """Fields: WindowedConv's; weights [oc, kh, kw, ic]."""
    prepared: bool = False  # cortex_m4: the rq and beff tables are constants (tinyexit.codegen.prepared)

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

    def work_bytes(self, kernels: str) -> int:
        kh, kw = self.kernel_hw
        return m4_conv_work(kh * kw * self.in_hwc[2], self.out_hwc[2], False, self.prepared) if kernels == M4 else 0

    def prepared_table(self) -> np.ndarray:
        """The cortex_m4 kernel's channel tables as one int32 constant: rq_table (out_c + 1 entries, as
        tx_conv_carve lays them), then beff[oc] = bias + input_offset * sum of the channel's weights
        (int32 wrap-around, as tx_conv_prepare computes it)."""
        oc = self.out_hwc[2]
        w = np.asarray(self.weights, np.int64).reshape(oc, -1).sum(axis=1)
        bias = np.zeros(oc, np.int64) if self.bias is None else np.asarray(self.bias, np.int64)
        beff = (bias + self.input_offset * w) & 0xFFFFFFFF
        beff = np.where(beff >= 1 << 31, beff - (1 << 32), beff)
        return np.concatenate([rq_table(self.mult, self.shift, self.output_offset, oc + 1).ravel(), beff])

    def constants(self, prefix: str) -> list[CArray]:
        own = [CArray("int32_t", f"{prefix}_prep", self.prepared_table())] if self.prepared else []
        return super().constants(prefix) + own

    def params_decl(self, prefix: str, inplace: bool, add: str = "0", conv_is_in1: bool = True) -> str:
        prep = f"{prefix}_prep" if self.prepared else "0"
        return self.params_struct(prefix, inplace, f", {add}, {int(conv_is_in1)}, {prep}")

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"tx_conv_s8(&{prefix}_p, {ins[0]}, {out}, {scratch}, 0, ub, ue);"
