"""Graph rewrites between reading and planning that keep TFLM's bytes: CONV_2D -> ADD becomes one step."""
from __future__ import annotations

from dataclasses import replace

from tinyexit.codegen.ir import Graph
from tinyexit.codegen.ops.add import Add
from tinyexit.codegen.ops.conv_2d import Conv2D
from tinyexit.codegen.ops.conv_add import ConvAdd


def fuse(graph: Graph) -> Graph:
    """Fuse each ADD into a CONV_2D producing one of its operands when that conv output has no other reader
    and the other operand already exists at the conv's step (the later such conv is chosen)."""
    ops = list(graph.ops)
    producer = {op.outputs[0]: i for i, op in enumerate(ops)}
    readers: dict[int, int] = {}
    for op in ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
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
