"""Constant folding of shape arithmetic: converters emit SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE chains
when a model was built with a dynamic batch. With static shapes in the file (batch 1) these int32 ops are
evaluated here, at generation time, and dropped from the graph."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from tinyexit.codegen.ir import Tensor

FOLDABLE = ("SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION", "RESHAPE", "CAST")


def _strided_slice(x: np.ndarray, begin, end, strides, o) -> np.ndarray | None:
    if x.ndim != 1 or o.EllipsisMask() or o.NewAxisMask():
        return None
    b, e, s = int(begin[0]), int(end[0]), int(strides[0])
    n = x.shape[0]
    if s == 0:
        return None
    if o.BeginMask() & 1:
        b = 0 if s > 0 else n - 1
    if o.EndMask() & 1:
        e = n if s > 0 else -n - 1
    if o.ShrinkAxisMask() & 1:
        return np.asarray(x[b], np.int32).reshape(())
    return np.asarray(x[slice(b, e if e != -n - 1 else None, s)], np.int32)


def try_fold(name: str, tensors: list[Tensor], ins: tuple[int, ...], options) -> np.ndarray | None:
    """The constant value of the op's output, or None when it cannot (or should not) be folded."""
    if name not in FOLDABLE:
        return None
    if name == "SHAPE":
        t = tensors[ins[0]]
        if not t.shape or any(d <= 0 for d in t.shape):
            return None
        return np.asarray(t.shape, np.int32)
    vals = []
    for i in ins:
        if i < 0:
            continue
        t = tensors[i]
        if t.data is None or t.dtype not in ("int32", "int64"):
            return None
        vals.append(np.asarray(t.data))
    if not vals:
        return None
    if name == "STRIDED_SLICE" and len(vals) == 4 and options is not None:
        return _strided_slice(vals[0], vals[1], vals[2], vals[3], options)
    if name == "PACK":
        axis = options.Axis() if options is not None else 0
        return np.stack(vals, axis=axis).astype(np.int32)
    if name == "CONCATENATION":
        axis = options.Axis() if options is not None else 0
        return np.concatenate([np.atleast_1d(v) for v in vals], axis=axis).astype(np.int32)
    if name in ("RESHAPE", "CAST"):
        return None  # int32 reshapes/casts of shape vectors have not been seen; keep them visible
    return None


def with_value(t: Tensor, value: np.ndarray) -> Tensor:
    return replace(t, data=value, shape=tuple(int(d) for d in value.shape), dtype="int32")
