"""Generation-time channel tables for the cortex_m4 kernels: a dense CONV_2D's requantization table and its
bias with the input offset folded in (Conv2D.prepared_table), a dense DEPTHWISE_CONV_2D's requantization table
(rq_table), also the conv of a fused CONV_2D+ADD, stored as constants instead of being rebuilt in the arena at every kernel call. That saves the
arena bytes of those tables and their per-call cost, which matters most when a kernel runs one row per call
(the fused chains of tinyexit.codegen.stream_plan). Only layers whose fast requantization is exact get them
(features.conv_needs_exact False); the others keep the per-call tables and their exact path. Flash: per conv
20 * (out_c + 1) + 4 * out_c bytes, per depthwise 20 * out_c. A fused ADD whose fast path is exact
(features.add_needs_exact False) gets its two input tables too (ConvAdd.add_table): 2,048 bytes of flash for 2,048
bytes less work space in the arena and no 512-entry table build per call."""
from __future__ import annotations

from dataclasses import replace

from tinyexit.codegen.features import add_needs_exact, conv_needs_exact
from tinyexit.codegen.ir import Graph
from tinyexit.codegen.ops.conv_2d import Conv2D
from tinyexit.codegen.ops.conv_add import ConvAdd
from tinyexit.codegen.ops.depthwise_conv_2d import DepthwiseConv2D


def _prepare(op):
    if type(op) is ConvAdd and type(op.conv) is Conv2D:    # its conv's tables, the ADD's when its fast path is exact
        return replace(op, conv=_prepare(op.conv), add_tables=not add_needs_exact(op.add))
    if type(op) is Conv2D and op.kernel == "tx_conv" and not op.wide:   # a wide conv's stream holds its tables
        k = op.kernel_hw[0] * op.kernel_hw[1] * op.in_hwc[2]
    elif isinstance(op, DepthwiseConv2D) and op.kernel == "tx_dwconv" and not op.rows:  # rows: in rows_table
        k = op.kernel_hw[0] * op.kernel_hw[1]
    else:
        return op
    return op if conv_needs_exact(op.bias, op.mult, op.shift, k) else replace(op, prepared=True)


def with_prepared_tables(graph: Graph) -> Graph:
    """The graph for the cortex_m4 kernels with every eligible conv's and depthwise conv's tables prepared."""
    return replace(graph, ops=tuple(_prepare(op) for op in graph.ops))
