"""CONV_2D + ADD fused (not a TFLite op): a conv whose only reader is an ADD writes the ADD's result
directly, element by element, often over the ADD's other operand (a residual connection). The conv's int8
result and the ADD's arithmetic are exactly TFLM's, so the bytes are those of the two ops in sequence;
the residual block then needs no third buffer and no pass of its own. Created by `tinyexit.codegen.fuse`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import CArray, Op
from tinyexit.codegen.ops._common import M4, m4_conv_work, m4_wide_work
from tinyexit.codegen.ops.add import Add
from tinyexit.codegen.ops.conv_2d import Conv2D, _i32


@dataclass(frozen=True, eq=False)
class ConvAdd(Op):
    conv: Conv2D = None         # inputs[0] is the conv's input
    add: Add = None             # inputs[1] is the ADD's other operand (the residual)
    conv_is_in1: bool = True
    add_tables: bool = False    # cortex_m4: the ADD's input tables are constants (add_table; tinyexit.codegen.prepared)

    name = "CONV_2D+ADD"
    kernel = "tx_conv"

    @property
    def kernel_hw(self) -> tuple[int, int]:
        return self.conv.kernel_hw

    def macs(self) -> int:
        return self.conv.macs()

    def units(self) -> int:
        return self.conv.units()

    def inplace_inputs(self) -> tuple[int, ...]:
        return (1,)   # output element i replaces residual element i after reading it

    def work_bytes(self, kernels: str) -> int:
        c = self.conv
        if kernels != M4:
            return 0
        if c.wide:
            return m4_wide_work(c.taps(), c.out_hwc[2], c.kernel_hw == (1, 1), True, self.add_tables)
        return m4_conv_work(c.taps(), c.out_hwc[2], True, c.prepared, add_table=self.add_tables)

    def add_table(self) -> np.ndarray:
        """The cortex_m4 kernel's two ADD input tables as tx_add_prepare builds them on the fast path (only for an
        ADD whose fast path is exact: features.add_needs_exact False), int32 [512]: for v in [-128, 127],
        entry v + 128 = MBQM((v + in1_offset) << left_shift, in1) << lsh and entry v + 384 the same for input 2,
        where MBQM is TFLM's MultiplyByQuantizedMultiplier (which the fast path equals under its bound) and
        lsh = max(out_shift, 0) + 1 the sum's left shift, all in int32 wrap-around."""
        a = self.add
        lsh = max(a.mo[1], 0) + 1
        v = np.arange(-128, 128, dtype=np.int64)
        t = [mbqm((v + off) << a.left_shift, m, s) << lsh
             for off, (m, s) in ((a.in1_offset, a.m1), (a.in2_offset, a.m2))]
        return _i32(np.concatenate(t))

    def constants(self, prefix: str) -> list[CArray]:
        own = [CArray("int32_t", f"{prefix}_addt", self.add_table())] if self.add_tables else []
        return self.conv.constants(prefix) + own

    def params_decl(self, prefix: str, inplace: bool) -> str:
        # The conv itself never runs in place here (its input is not the output's range).
        table = f"{prefix}_addt" if self.add_tables else "0"
        return (self.add.params_decl(f"{prefix}_add", False, table) + "\n" +
                self.conv.params_decl(prefix, False, add=f"&{prefix}_add_p", conv_is_in1=self.conv_is_in1))

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"tx_conv_s8(&{prefix}_p, {ins[0]}, {out}, {scratch}, {ins[1]}, ub, ue);"


def mbqm(x: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """TFLM's MultiplyByQuantizedMultiplier (tx_mbqm) on int32 values x (int64 array), for mult >= 0:
    SaturatingRoundingDoublingHighMul(x << left, mult) (truncating division), then RoundingDivideByPOT by right."""
    left, right = max(shift, 0), max(-shift, 0)
    ab = _i32(np.asarray(x, np.int64) << left) * int(mult)
    num = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(num >= 0, num >> 31, -((-num) >> 31))     # toward zero
    mask = (1 << right) - 1
    return (q >> right) + ((q & mask) > (mask >> 1) + (q < 0))
