"""Helpers shared by the conv-like op modules (shape checks, weights, requantization)."""
from __future__ import annotations

import numpy as np

from tinyexit.codegen.ir import OpContext, Tensor


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


def check_out_shape(ctx: OpContext, got: tuple, want: tuple) -> None:
    if tuple(got) != tuple(want):
        raise ctx.refuse(f"output shape {list(got)} does not match the computed {list(want)}")
