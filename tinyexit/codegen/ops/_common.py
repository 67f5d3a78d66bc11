"""Helpers shared by the conv-like op modules (shape checks, weights, requantization)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyexit.codegen.ir import CArray, Op, OpContext, Tensor, out_size, pads_same, padding_name
from tinyexit.codegen.quant import activation_range, conv_multipliers


# Kernel work space of the cortex_m4 variant (firmware_templates/kernels/cortex_m4/): each kernel carves its
# tables from the arena at `scratch` + the ring, in the order and sizes below (the C carve functions
# tx_conv_carve, tx_dw_carve, tx_spc_carve lay out the same bytes; tests/kernels_m4 checks no kernel writes
# past them).
M4 = "cortex_m4"
RQ_BYTES = 20   # sizeof(tx_rq_t): mult, lsh, half, neg, right


def a4(n: int) -> int:
    return (n + 3) // 4 * 4


def m4_conv_work(k: int, oc: int, fused_add: bool, prepared: bool = False, direct: bool = False,
                 add_table: bool = False) -> int:
    """tx_conv_carve: rq[oc + 1], beff[oc] (not with `prepared` tables: constants, see rq_table), x16 (16 bytes
    per 4 patch bytes, k rounded up to 8), two patch columns; with a fused ADD, the conv results of a pair
    (2 * oc), the two 256-entry int32 tables (not with `add_table`: constants) and 3 tx_rq_t. A `direct` (1x1) conv whose every channel pair
    takes the assembly passes (prepared tables, so no exact path; even oc; k % 8 == 0) never touches the
    columns: none planned (tx_conv_s8 reads its pixels where they lie)."""
    tables = 0 if prepared else RQ_BYTES * (oc + 1) + 4 * oc
    cols = 0 if direct and prepared and not fused_add and oc % 2 == 0 and k % 8 == 0 else 2 * a4(k)
    n = tables + 4 * ((k + 7) // 8 * 8) + cols
    return n + (a4(2 * oc) + (0 if add_table else 2 * 1024) + 3 * RQ_BYTES if fused_add else 0)


def rq_table(mult, shift, zero_point: int, entries: int) -> np.ndarray:
    """The cortex_m4 kernels' tx_rq_t of each channel as tx_rq_make_bound fills it on its fast path
    (firmware_templates/kernels/cortex_m4/_requant.h.j2; keep both in step), int32 [entries][5]: mult,
    lsh = max(shift, 0) + 1, half = rounding half + zp << right (int32 wrap-around), neg, right =
    max(-shift, 0); entries past the channels are 0. Only for channels whose fast path is exact
    (features.conv_needs_exact False: right <= 22)."""
    t = np.zeros((entries, 5), np.int64)
    for c, (m, s) in enumerate(zip(mult, shift)):
        right = max(-int(s), 0)
        half = ((1 << (right - 1)) if right else 0) + ((int(zero_point) << right) & 0xFFFFFFFF)
        half &= 0xFFFFFFFF
        t[c] = (int(m), max(int(s), 0) + 1, half - (1 << 32) if half >= 1 << 31 else half, -1 if right else 0,
                right)
    return t


def m4_wide_work(k: int, oc: int, direct: bool, fused_add: bool = False, add_table: bool = False) -> int:
    """tx_conv_wide: x16 (4 pixels' widened patches: 8 bytes per patch entry, k rounded up to 4), four
    gathered patch columns unless 1x1, the sink of a missing pixel's outputs (oc); with a fused ADD, the
    conv results of a block (4 * oc), the two 256-entry int32 tables (not with `add_table`: constants) and
    3 tx_rq_t."""
    n = 8 * a4(k) + (0 if direct else 4 * a4(k)) + a4(oc)
    return n + (4 * oc + (0 if add_table else 2 * 1024) + 3 * RQ_BYTES if fused_add else 0)


def nhwc(ctx: OpContext, t: Tensor) -> tuple[int, int, int]:
    if len(t.shape) != 4:
        raise ctx.refuse(f"tensor '{t.name}' has shape {list(t.shape)}, expected 4-D NHWC")
    if t.shape[0] != 1:
        raise ctx.refuse(f"tensor '{t.name}' has batch {t.shape[0]}, only batch 1 is supported")
    if max(t.shape) > 65535:
        raise ctx.refuse(f"tensor '{t.name}' has a dimension above 65535 (the kernels use 16-bit sizes)")
    return int(t.shape[1]), int(t.shape[2]), int(t.shape[3])


def const_int8_weights(ctx: OpContext, pos: int) -> Tensor:
    w = ctx.tensor(pos)
    if w.data is None:
        raise ctx.refuse(f"weights '{w.name}' are not constant")
    if w.dtype != "int8":
        raise ctx.refuse(f"weights '{w.name}' are {w.dtype}, only int8 weights are supported")
    if any(z != 0 for z in w.zero_points):
        raise ctx.refuse(f"weights '{w.name}' have a non-zero zero point (TFLM requires symmetric int8 weights)")
    if not w.scales:
        raise ctx.refuse(f"weights '{w.name}' are not quantized")
    return w


def const_bias(ctx: OpContext, pos: int, channels: int) -> np.ndarray | None:
    if len(ctx.inputs) <= pos or ctx.inputs[pos] < 0:
        return None
    b = ctx.tensor(pos)
    if b.data is None:
        raise ctx.refuse(f"bias '{b.name}' is not constant")
    if b.dtype != "int32":
        raise ctx.refuse(f"bias '{b.name}' is {b.dtype}, only int32 bias is supported")
    if b.elements != channels:
        raise ctx.refuse(f"bias '{b.name}' has {b.elements} values for {channels} output channels")
    return np.asarray(b.data, np.int32).ravel()


def check_channel_scales(ctx: OpContext, w: Tensor, channels: int, dim: int) -> None:
    """One scale (per-tensor) or one per output channel on weight dimension `dim` (per-channel)."""
    if len(w.scales) not in (1, channels) or (len(w.scales) > 1 and w.quantized_dim != dim):
        raise ctx.refuse(f"weights have {len(w.scales)} scales on dimension {w.quantized_dim} for {channels} "
                         f"output channels (per-channel scales must be on dimension {dim})")


def check_out_shape(ctx: OpContext, got: tuple, want: tuple) -> None:
    if tuple(got) != tuple(want):
        raise ctx.refuse(f"output shape {list(got)} does not match the computed {list(want)}")


def requant_constants(op, prefix: str) -> list[CArray]:
    """Per-channel multipliers and shifts and the optional bias of a conv-like op, as C arrays."""
    arrs = [CArray("int32_t", f"{prefix}_m", np.array(op.mult, np.int64)),
            CArray("int8_t", f"{prefix}_s", np.array(op.shift, np.int64))]
    if op.bias is not None:
        arrs.append(CArray("int32_t", f"{prefix}_b", op.bias))
    return arrs


def weight_constants(op, prefix: str) -> list[CArray]:
    """Dense int8 weights followed by the requantization constants."""
    return [CArray("int8_t", f"{prefix}_w", op.weights)] + requant_constants(op, prefix)


@dataclass(frozen=True, eq=False)
class WindowedConv(Op):
    """What CONV_2D and DEPTHWISE_CONV_2D share: their parameters but the depthwise multiplier, reading the
    window geometry and requantization from the flatbuffer, work split by output rows, running in place when
    the output has the input's shape with stride 1 (keeping a ring of the input pixels still to be read),
    the weight constants and the params struct."""
    in_hwc: tuple[int, int, int] = (0, 0, 0)
    out_hwc: tuple[int, int, int] = (0, 0, 0)
    kernel_hw: tuple[int, int] = (1, 1)
    stride_hw: tuple[int, int] = (1, 1)
    pad_tl: tuple[int, int] = (0, 0)
    input_offset: int = 0
    output_offset: int = 0
    act: tuple[int, int] = (-128, 127)
    weights: np.ndarray = None          # int8; conv [oc, kh, kw, ic] (OHWI), depthwise [kh, kw, oc]
    bias: np.ndarray | None = None      # [oc] int32
    mult: tuple[int, ...] = ()
    shift: tuple[int, ...] = ()

    @staticmethod
    def read_io(ctx: OpContext):
        """Input, output (int8, NHWC, batch 1) and the int8 weight tensor; dilation other than 1 is refused."""
        o = ctx.options
        if o.DilationHFactor() != 1 or o.DilationWFactor() != 1:
            raise ctx.refuse(f"dilation {o.DilationHFactor()}x{o.DilationWFactor()} is not supported (only 1)")
        x, y = ctx.tensor(0), ctx.out()
        ctx.require_int8(x, y)
        return x, y, nhwc(ctx, x), nhwc(ctx, y), const_int8_weights(ctx, 1)

    @staticmethod
    def window_fields(ctx: OpContext, x: Tensor, y: Tensor, w: Tensor, in_hwc, out_hwc) -> dict:
        """The dataclass fields both ops compute alike: geometry (kernel from the weights' H and W, strides,
        TFLM's leading padding, checked output size), offsets, activation clamp, bias and multipliers."""
        (ih, iw, _), (oh, ow, oc) = in_hwc, out_hwc
        kh, kw = int(w.shape[1]), int(w.shape[2])
        sh, sw = ctx.options.StrideH(), ctx.options.StrideW()
        pad = padding_name(ctx)
        check_out_shape(ctx, (oh, ow), (out_size(ih, sh, kh, pad), out_size(iw, sw, kw, pad)))
        mult, shift = conv_multipliers(x.scale, w.scales, y.scale, oc)
        return dict(index=ctx.index, inputs=(ctx.inputs[0],), outputs=(ctx.outputs[0],),
                    in_hwc=in_hwc, out_hwc=out_hwc, kernel_hw=(kh, kw), stride_hw=(sh, sw),
                    pad_tl=(pads_same(ih, oh, sh, kh, pad), pads_same(iw, ow, sw, kw, pad)),
                    input_offset=-x.zero_point, output_offset=y.zero_point,
                    act=activation_range(ctx.activation(), y.scale, y.zero_point),
                    bias=const_bias(ctx, 2, oc), mult=tuple(mult), shift=tuple(shift))

    def units(self) -> int:
        return self.out_hwc[0]

    def inplace_inputs(self) -> tuple[int, ...]:
        # Same shape and stride 1: output pixel p only replaces input pixel p (see ring_pixels).
        if self.in_hwc == self.out_hwc and self.stride_hw == (1, 1):
            return (0,)
        return ()

    def ring_pixels(self, inplace: bool) -> int:
        # In place, output pixel p overwrites input pixel p; the earliest input pixel a later output still
        # reads is p - (pad_top * in_w + pad_left), so that many pixels plus p itself are kept aside.
        return self.pad_tl[0] * self.in_hwc[1] + self.pad_tl[1] + 1 if inplace else 0

    def scratch_bytes(self, inplace: bool) -> int:
        return self.ring_pixels(inplace) * self.in_hwc[2]

    def constants(self, prefix: str) -> list[CArray]:
        return weight_constants(self, prefix)

    def weights_init(self, prefix: str) -> str:
        """The params struct's weight field (the array of `constants`)."""
        return f"{prefix}_w"

    def multiplier_init(self) -> str:
        """The params struct's field(s) between the output shape and the kernel size (depthwise: its multiplier
        and input layout)."""
        return ""

    def params_decl(self, prefix: str, inplace: bool) -> str:
        return self.params_struct(prefix, inplace)

    def params_struct(self, prefix: str, inplace: bool, tail: str = "", arrays: bool = True) -> str:
        """The `<kernel>_params_t` initializer; `tail`: fields after the multipliers (the fused ADD's);
        `arrays=False`: null weight, bias, multiplier and shift pointers (a kernel that reads none of them)."""
        (ih, iw, ic), (oh, ow, oc) = self.in_hwc, self.out_hwc
        bias = f"{prefix}_b" if self.bias is not None else "0"
        if not arrays:
            return self.params_struct(prefix, inplace, tail).replace(
                f"  {self.weights_init(prefix)}, {bias}, {prefix}_m, {prefix}_s{tail}\n", f"  0, 0, 0, 0{tail}\n")
        return (f"static const {self.kernel}_params_t {prefix}_p = {{\n"
                f"  {ih}, {iw}, {ic}, {oh}, {ow}, {oc}, {self.multiplier_init()}"
                f"{self.kernel_hw[0]}, {self.kernel_hw[1]},\n"
                f"  {self.stride_hw[0]}, {self.stride_hw[1]}, {self.pad_tl[0]}, {self.pad_tl[1]}, "
                f"{self.ring_pixels(inplace)},\n"
                f"  {self.input_offset}, {self.output_offset}, {self.act[0]}, {self.act[1]},\n"
                f"  {self.weights_init(prefix)}, {bias}, {prefix}_m, {prefix}_s{tail}\n}};")
