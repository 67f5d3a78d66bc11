"""Sparse weights for pruned layers: CONV_2D (any kernel, 1x1 included), DEPTHWISE_CONV_2D and
FULLY_CONNECTED store their int8 weights as per-output-channel run lists when that is smaller than dense.

Format (one list per output channel, channels in order): the channel's non-zero weights in the order of
its kernel volume (conv: ky, kx, in channel - OHWI; depthwise: ky, kx; fully connected: input index),
each as an int8 value and a uint8 step from the previous index (the first from 0). A step above 255 is
bridged by filler entries of value 0 (a zero weight adds nothing). Per channel a count of entries (uint8,
or uint16 when a count exceeds 255). Stored bytes: 2 per entry + 1 or 2 per channel.

The kernels (firmware_templates/kernels/reference/tx_sparse_*.c.j2; conv and fully connected also in
cortex_m4/, same bytes) add (x + input_offset) * w for the
stored entries whose tap lies inside the image, exactly the terms of TFLM's reference sum that are not
zero: a zero weight adds (x + input_offset) * 0 = 0 and padding taps add nothing in TFLM either, so the
int32 accumulators, hence the int8 outputs, equal TFLM's on the dense model byte for byte.

    sparsify(graph) -> Graph         every eligible op replaced when its sparse form is smaller
    encode(rows) -> SparseRows       rows: [channels, volume] int8
    weight_table(models) -> dict     dense vs stored constant bytes per layer of a library
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from tinyexit.codegen.ir import CArray, Graph
from tinyexit.codegen.ops.conv_2d import Conv2D
from tinyexit.codegen.ops.depthwise_conv_2d import DepthwiseConv2D, SliceDepthwiseConv2D
from tinyexit.codegen.ops.fully_connected import FullyConnected
from tinyexit.codegen.ops._common import M4, RQ_BYTES, a4, requant_constants

HEADER = "tx_sparse.h"


@dataclass(frozen=True, eq=False)
class SparseRows:
    values: np.ndarray      # int8 [entries]
    steps: np.ndarray       # uint8 [entries]
    counts: np.ndarray      # [channels], uint8 or uint16

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.steps.nbytes + self.counts.nbytes)

    @property
    def count_type(self) -> str:
        return "uint8_t" if self.counts.dtype == np.uint8 else "uint16_t"

    def decode(self, volume: int) -> np.ndarray:
        """Back to dense rows [channels, volume] (tests; the kernels never do this)."""
        rows = np.zeros((len(self.counts), volume), np.int8)
        j = 0
        for ch, n in enumerate(self.counts):
            k = 0
            for _ in range(int(n)):
                k += int(self.steps[j])
                if self.values[j]:
                    rows[ch, k] = self.values[j]
                j += 1
        return rows


def sparse_bytes_for(kept: int, channels: int, volume: int) -> int:
    """Stored bytes of `kept` non-zero weights over `channels` lists of `volume` (fillers not counted)."""
    return 2 * kept + channels * (1 if volume <= 255 else 2)


def encode(rows: np.ndarray) -> SparseRows:
    rows = np.asarray(rows, np.int8)
    values, steps, counts = [], [], []
    for row in rows:
        prev, n = 0, 0
        for k in np.flatnonzero(row):
            k = int(k)
            while k - prev > 255:
                values.append(0)
                steps.append(255)
                prev += 255
                n += 1
            values.append(int(row[k]))
            steps.append(k - prev)
            prev = k
            n += 1
        counts.append(n)
    ctype = np.uint8 if max(counts, default=0) <= 255 else np.uint16
    return SparseRows(np.array(values, np.int8), np.array(steps, np.uint8), np.array(counts, ctype))


def _sparse_arrays(prefix: str, s: SparseRows) -> list[CArray]:
    # Empty C arrays are not allowed: an all-zero layer keeps one filler entry that no count reaches.
    vals = s.values if len(s.values) else np.zeros(1, np.int8)
    steps = s.steps if len(s.steps) else np.zeros(1, np.uint8)
    return [CArray("int8_t", f"{prefix}_wv", vals), CArray("uint8_t", f"{prefix}_wd", steps),
            CArray(s.count_type, f"{prefix}_wn", s.counts)]


class SparseWeights:
    """Mixed in before a dense conv-like op class: the same fields, geometry, work split and params struct
    except the weights, stored as run lists (`sparse`) and read by the kernel `tx_sparse_<op>` (whose
    params struct is the dense one with a tx_sparse_t in place of the weight pointer)."""
    headers: ClassVar[tuple[str, ...]] = (HEADER,)

    def constants(self, prefix: str) -> list[CArray]:
        return _sparse_arrays(prefix, self.sparse) + requant_constants(self, prefix)

    def weights_init(self, prefix: str) -> str:
        s = self.sparse
        c8 = f"{prefix}_wn" if s.count_type == "uint8_t" else "0"
        c16 = f"{prefix}_wn" if s.count_type == "uint16_t" else "0"
        return f"{{ {prefix}_wv, {prefix}_wd, {c8}, {c16} }}"


@dataclass(frozen=True, eq=False)
class SparseConv2D(SparseWeights, Conv2D):
    sparse: SparseRows = None
    kernel = "tx_sparse_conv"

    def params_decl(self, prefix: str, inplace: bool) -> str:
        return self.params_struct(prefix, inplace)      # no fused ADD

    def work_bytes(self, kernels: str) -> int:
        """tx_spc_carve (cortex_m4): widened octet 16 * k, rq, bias, sums (8 pixels) and stage per channel,
        the exact-channel lists, and 8 gathered columns for a kernel larger than 1x1."""
        if kernels != M4:
            return 0
        (kh, kw), oc = self.kernel_hw, self.out_hwc[2]
        k = kh * kw * self.in_hwc[2]
        return 16 * k + (RQ_BYTES + 4 + 32 + 8) * oc + a4(2 * oc) + a4(oc) + (8 * k if kh * kw > 1 else 0)

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"tx_sparse_conv_s8(&{prefix}_p, {ins[0]}, {out}, {scratch}, ub, ue);"


@dataclass(frozen=True, eq=False)
class SparseDepthwiseConv2D(SparseWeights, DepthwiseConv2D):
    sparse: SparseRows = None
    kernel = "tx_sparse_dwconv"


@dataclass(frozen=True, eq=False)
class SparseSliceDepthwiseConv2D(SparseWeights, SliceDepthwiseConv2D):
    """A fused channel slice -> depthwise with sparse weights (the same params struct layout)."""
    sparse: SparseRows = None
    kernel = "tx_sparse_dwconv"


@dataclass(frozen=True, eq=False)
class SparseFullyConnected(SparseWeights, FullyConnected):
    sparse: SparseRows = None
    kernel = "tx_sparse_fc"

    def params_decl(self, prefix: str, inplace: bool) -> str:
        return self.unfolded_params_decl(prefix)    # the original bias and input offset


def channel_rows(op) -> np.ndarray:
    """The op's weights as [output channels, kernel volume] in the kernels' index order."""
    if isinstance(op, DepthwiseConv2D):
        kh, kw, oc = op.weights.shape
        return op.weights.reshape(kh * kw, oc).T
    return op.weights.reshape(op.weights.shape[0], -1)       # conv OHWI, fully connected [out, in]


_SPARSE = {Conv2D: SparseConv2D, DepthwiseConv2D: SparseDepthwiseConv2D,
           SliceDepthwiseConv2D: SparseSliceDepthwiseConv2D, FullyConnected: SparseFullyConnected}


def sparse_form(op):
    """The sparse twin of `op` when its sparse weights take fewer bytes than dense, else None."""
    cls = _SPARSE.get(type(op))
    if cls is None:
        return None
    s = encode(channel_rows(op))
    if s.nbytes >= op.weights.size:
        return None
    fields = {f.name: getattr(op, f.name) for f in dataclasses.fields(op)}
    return cls(**fields, sparse=s)


def sparsify(graph: Graph) -> Graph:
    """Replace every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED whose sparse storage is smaller."""
    ops = [sparse_form(op) or op for op in graph.ops]
    if all(a is b for a, b in zip(ops, graph.ops)):
        return graph
    return replace(graph, ops=tuple(ops))


def weight_table(models: dict[str, str | os.PathLike]) -> dict:
    """Per layer of every model: dense constant bytes, stored constant bytes (sparse when smaller) and the
    format; totals over the library (the generated library's weight_bytes is `stored_bytes`)."""
    from tinyexit.codegen.fuse import fuse
    from tinyexit.codegen.reader import read_model

    layers, dense_total, stored_total = [], 0, 0
    for name, path in models.items():
        g = fuse(read_model(path, name=name))
        for op in g.ops:
            dense = sum(a.nbytes for a in op.constants("x"))
            sp = sparse_form(op)
            stored = sum(a.nbytes for a in sp.constants("x")) if sp is not None else dense
            dense_total += dense
            stored_total += stored
            if getattr(op, "weights", None) is not None:
                layers.append({"model": name, "step": op.index, "op": op.name,
                               "weight_elements": int(op.weights.size),
                               "zeros": int(np.sum(op.weights == 0)),
                               "dense_bytes": dense, "stored_bytes": stored,
                               "format": "sparse" if sp is not None else "dense"})
    return {"dense_bytes": dense_total, "stored_bytes": stored_total,
            "sparse_layers": sum(1 for la in layers if la["format"] == "sparse"), "layers": layers}
