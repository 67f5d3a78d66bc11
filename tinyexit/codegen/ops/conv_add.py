"""CONV_2D + ADD fused (not a TFLite op): a conv whose only reader is an ADD writes the ADD's result
directly, element by element, often over the ADD's other operand (a residual connection). The conv's int8
result and the ADD's arithmetic are exactly TFLM's, so the bytes are those of the two ops in sequence;
the residual block then needs no third buffer and no pass of its own. Created by `tinyexit.codegen.fuse`."""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.codegen.ir import CArray, Op
from tinyexit.codegen.ops._common import M4, m4_conv_work, m4_wide_work
from tinyexit.codegen.ops.add import Add
from tinyexit.codegen.ops.conv_2d import Conv2D


@dataclass(frozen=True, eq=False)
class ConvAdd(Op):
    conv: Conv2D = None         # inputs[0] is the conv's input
    add: Add = None             # inputs[1] is the ADD's other operand (the residual)
    conv_is_in1: bool = True

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
            return m4_wide_work(c.taps(), c.out_hwc[2], c.kernel_hw == (1, 1), True)
        return m4_conv_work(c.taps(), c.out_hwc[2], True, c.prepared)

    def constants(self, prefix: str) -> list[CArray]:
        return self.conv.constants(prefix)

    def params_decl(self, prefix: str, inplace: bool) -> str:
        # The conv itself never runs in place here (its input is not the output's range).
        return (self.add.params_decl(f"{prefix}_add", False) + "\n" +
                self.conv.params_decl(prefix, False, add=f"&{prefix}_add_p", conv_is_in1=self.conv_is_in1))

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"tx_conv_s8(&{prefix}_p, {ins[0]}, {out}, {scratch}, {ins[1]}, ub, ue);"
