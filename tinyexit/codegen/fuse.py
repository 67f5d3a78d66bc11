"""Graph rewrites between reading and planning that keep TFLM's bytes: CONV_2D -> ADD becomes one step, and
so does a channel STRIDED_SLICE -> DEPTHWISE_CONV_2D (the depthwise reads the slice in place)."""
from __future__ import annotations

import dataclasses
from dataclasses import replace

from tinyexit.codegen.ir import Graph
from tinyexit.codegen.ops.add import Add
from tinyexit.codegen.ops.conv_2d import Conv2D
from tinyexit.codegen.ops.conv_add import ConvAdd
from tinyexit.codegen.ops.depthwise_conv_2d import DepthwiseConv2D, SliceDepthwiseConv2D
from tinyexit.codegen.ops.strided_slice import StridedSlice


def fuse(graph: Graph) -> Graph:
    """CONV_2D -> ADD (fuse_conv_add), then channel slice -> DEPTHWISE_CONV_2D (fuse_slice_depthwise)."""
    return fuse_slice_depthwise(fuse_conv_add(graph))


def producers_and_readers(ops) -> tuple[dict[int, int], dict[int, int]]:
    """Step index producing each tensor, and how many op inputs read each tensor."""
    producer = {op.outputs[0]: i for i, op in enumerate(ops)}
    readers: dict[int, int] = {}
    for op in ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    return producer, readers


def fuse_conv_add(graph: Graph) -> Graph:
    """Fuse each ADD into a CONV_2D producing one of its operands when that conv output has no other reader
    and the other operand already exists at the conv's step (the later such conv is chosen)."""
    ops = list(graph.ops)
    producer, readers = producers_and_readers(ops)
    drop = set()
    for a_idx, add in enumerate(ops):
        if not isinstance(add, Add):
            continue
        best = None
        for pos in (0, 1):
            t, other = add.inputs[pos], add.inputs[1 - pos]
            c_idx = producer.get(t)
            if (c_idx is None or not isinstance(ops[c_idx], Conv2D) or readers.get(t) != 1
                    or t in graph.outputs or t == other or producer.get(other, -1) >= c_idx):
                continue
            if best is None or c_idx > best[0]:
                best = (c_idx, pos)
        if best is None:
            continue
        c_idx, pos = best
        conv = ops[c_idx]
        ops[c_idx] = ConvAdd(index=conv.index, inputs=(conv.inputs[0], add.inputs[1 - pos]), outputs=add.outputs,
                             conv=conv, add=add, conv_is_in1=(pos == 0))
        drop.add(a_idx)
    kept = [op for i, op in enumerate(ops) if i not in drop]
    return replace(graph, ops=tuple(replace(op, index=i) for i, op in enumerate(kept)))


def channel_slice(op) -> tuple[int, int, int] | None:
    """(map channels, first channel, channels) of a STRIDED_SLICE that keeps all of batch 1, H and W of a
    4-D map and a run of its channels; None for any other slice."""
    if not isinstance(op, StridedSlice):
        return None
    n, h, w, c = op.in_dims
    if n != 1 or op.begin[:3] != (0, 0, 0) or op.size[:3] != (1, h, w) or op.size[3] < 1:
        return None
    return c, op.begin[3], op.size[3]


def fuse_slice_depthwise(graph: Graph) -> Graph:
    """Fuse each channel STRIDED_SLICE whose output's only reader is a dense DEPTHWISE_CONV_2D (not a graph
    output) into it: the depthwise reads the slice's input with a pixel stride and a channel offset."""
    ops = list(graph.ops)
    producer, readers = producers_and_readers(ops)
    drop = set()
    for d_idx, dw in enumerate(ops):
        if type(dw) is not DepthwiseConv2D or dw.in_pixel:
            continue
        t = dw.inputs[0]
        s_idx = producer.get(t)
        cs = channel_slice(ops[s_idx]) if s_idx is not None else None
        if cs is None or readers.get(t) != 1 or t in graph.outputs:
            continue
        c, first, n = cs
        if dw.in_hwc != (ops[s_idx].in_dims[1], ops[s_idx].in_dims[2], n):
            continue
        fields = {f.name: getattr(dw, f.name) for f in dataclasses.fields(dw)}
        fields.update(inputs=ops[s_idx].inputs, in_pixel=c, in_channel=first)
        # The fused step runs where the depthwise ran: the slice's input is alive there (it was read
        # by the slice, which came earlier), so the topological order still holds.
        ops[d_idx] = SliceDepthwiseConv2D(**fields)
        drop.add(s_idx)
    kept = [op for i, op in enumerate(ops) if i not in drop]
    return replace(graph, ops=tuple(replace(op, index=i) for i, op in enumerate(kept)))
