"""Fused, row-streamed execution (MCUNetV2 patch-based inference / vMCU segment-level memory, by rows): a run
of consecutive convolutions whose intermediate tensors are read only inside the run (a DS-CNN's conv and
depthwise-pointwise pairs; a ResNet's residual blocks, their skip tensors included), optionally ending in a
global AVERAGE_POOL_2D, becomes one step (StreamChain, tinyexit.codegen.stream_chain) that computes the run
row by row. Between stages only a window of rows lives, never a whole tensor.

Scheduling (the C driver tx_chain_run, mirrored by `_simulate`): at every step the last stage in run order
that can produce its next output row does so (its input rows and its residual row exist). That consumes
rows as soon as they exist (depth first: pull-like, the output drives it), so a window holds only the rows
its readers still need. Window sizes come from simulating that same schedule at generation time: the most
rows any stage's window holds when it writes a row. With a 3x3 stride-1 reader that is 3 rows; a skip
tensor read by a residual ADD several layers later keeps the rows between.

Memory beyond the windows (the simulation proves each placement): an in-place 1x1 works in a row of its
stage's source window that no reader needs once the stage's first op ran (`free`); the earlier stages'
kernels work in the last stage's window when a sink consumes its rows within its calls; and a chain the
planner runs in place (its input dies there) writes its output over the input's first bytes and puts later
stages' windows over input rows no stage reads any more when they first write (`in_win`).

A chain is one step of one unit: the checkpointing runtime cannot commit inside it, so `generate(plan="fused")`
is a choice of the caller (the checkpointing builds keep the default plan "layers"); a chain run in place
overwrites its input, so it could not be re-run from it either."""
from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from tinyexit.codegen.ir import Graph, Op
from tinyexit.codegen.ops.average_pool_2d import AveragePool2D
from tinyexit.codegen.ops.conv_2d import Conv2D
from tinyexit.codegen.ops.conv_add import ConvAdd
from tinyexit.codegen.ops.depthwise_conv_2d import DepthwiseConv2D
from tinyexit.codegen.ops._common import a4
from tinyexit.codegen.stream_chain import CHAIN_INPUT, NONE, StreamChain, geom, row_bytes

MAX_STAGES = 16     # TX_CHAIN_MAX_STAGES (firmware_templates/kernels/tx_chain.h.j2)
PLANS = ("layers", "fused", "fused2")
# fused2: stages whose output rows have an odd pixel count run two output rows per kernel call (the cortex_m4
# conv and depthwise kernels compute pixels in pairs: a lone last pixel costs a whole pair), their windows one
# row taller.
ROWS_PER_CALL = {"fused": 1, "fused2": 2}


def _streamable(op: Op) -> bool:
    """A dense conv, depthwise conv or conv with a fused ADD, which the kernels run by output rows."""
    return ((type(op) is Conv2D and op.kernel == "tx_conv")
            or (type(op) is ConvAdd and op.kernel == "tx_conv" and type(op.conv) is Conv2D)
            or (type(op) is DepthwiseConv2D and op.kernel == "tx_dwconv" and not op.in_pixel))


def _joins_in_place(op: Op) -> bool:
    """A 1x1 stride-1 conv whose output has its input's shape: it runs in place on its stage's rows."""
    return type(op) is Conv2D and tuple(op.kernel_hw) == (1, 1) and op.inplace_inputs() == (0,)


def _global_pool(op: Op) -> bool:
    """An average pool with one output pixel whose window (no padding) covers the whole input."""
    if type(op) is not AveragePool2D:
        return False
    ih, iw, _ = op.in_hwc
    return tuple(op.out_hw) == (1, 1) and tuple(op.pad_tl) == (0, 0) and op.kernel_hw[0] >= ih \
        and op.kernel_hw[1] >= iw


def _stages(members: list[Op], readers: dict[int, int]) -> list[tuple[int, ...]]:
    """Member positions per stage: a 1x1 that keeps the shape joins the op before it when it is that op's
    output's only reader."""
    out, k = [], 0
    while k < len(members):
        nxt = members[k + 1] if k + 1 < len(members) else None
        if nxt is not None and _joins_in_place(nxt) and nxt.inputs[0] == members[k].outputs[0] \
                and readers.get(members[k].outputs[0]) == 1:
            out.append((k, k + 1))
            k += 2
        else:
            out.append((k,))
            k += 1
    return out


class Sim(NamedTuple):
    most: list[int]         # per stage: the most rows its window holds when it writes a row
    free: list[bool]        # per stage: a free row of its source window at every call (with `cap`)
    dead: list[int]         # per stage: bytes at the chain input's start no reader needs at its first call
    out_fits: bool          # every output row the last stage writes lies in input bytes no reader needs


def _simulate(stages: list[dict], cap: list[int] | None = None, in_rb: int = 0, out_rb: int = 0) -> Sim:
    """Run tx_chain_run's schedule on the stages' geometry (dicts: in_h, out_h, k_h, stride, pad, src, res,
    group: output rows per call, first: rows of the first call) and return the most rows each stage's window
    holds when it writes a row. With the windows' capacities `cap` (rows; the last stage's: its rows per call
    with a sink, else its whole output), also where each window starts (base, moved as tx_chain_run moves it)
    and, per stage, whether at every call of it some row of its source window is free once its first op has
    run (no reader needs it any more, or it is not written yet): tx_chain_free, the work space of the
    stage's in-place 1x1 then. With the chain input's and output's row bytes, also where the chain could
    run in place (Sim.dead, Sim.out_fits; StreamChain.in_win). Mirrors
    firmware_templates/kernels/reference/tx_chain.c.j2 (tx_chain_ready, tx_chain_low, tx_chain_run): keep
    both in step."""
    n = len(stages)
    done, most, base, dead = [0] * n, [1] * n, [0] * n, [0] * n
    free = [cap is not None and t["src"] >= 0 for t in stages]
    in_h = next((t["in_h"] for t in stages if t["src"] == CHAIN_INPUT), 0)
    out_fits = stages[-1]["src"] != CHAIN_INPUT and stages[-1]["res"] != CHAIN_INPUT

    def low_in() -> int:
        """The first row of the chain's input some stage still reads (in_h: none)."""
        lo = in_h
        for c, t in enumerate(stages):
            if done[c] < t["out_h"] and t["src"] == CHAIN_INPUT:
                lo = min(lo, max(0, done[c] * t["stride"] - t["pad"]))
            if done[c] < t["out_h"] and t["res"] == CHAIN_INPUT:
                lo = min(lo, done[c])
        return lo

    def low(s: int) -> int:
        lo = done[s]
        for c, t in enumerate(stages):
            if t["src"] == s:
                lo = min(lo, done[s] if done[c] >= t["out_h"] else max(0, done[c] * t["stride"] - t["pad"]))
            if t["res"] == s:
                lo = min(lo, done[s] if done[c] >= t["out_h"] else done[c])
        return lo

    def rows(s: int) -> int:
        t = stages[s]
        return min(t["first"] if done[s] == 0 else t["group"], t["out_h"] - done[s])

    def ready(s: int) -> bool:
        t = stages[s]
        if done[s] >= t["out_h"]:
            return False
        last = done[s] + rows(s) - 1
        if t["src"] >= 0 and done[t["src"]] < min(last * t["stride"] - t["pad"] + t["k_h"], t["in_h"]):
            return False
        return not (t["res"] >= 0 and done[t["res"]] < last + 1)

    while done[-1] < stages[-1]["out_h"]:
        s = next((s for s in reversed(range(n)) if ready(s)), None)
        if s is None:
            raise AssertionError("a chain the scheduler cannot run")    # the stages' inputs come first
        r = rows(s)
        most[s] = max(most[s], done[s] - low(s) + r)
        if done[s] == 0:
            dead[s] = low_in() * in_rb
        if s + 1 == n:
            out_fits = out_fits and (done[s] + r) * out_rb <= low_in() * in_rb
        if cap is not None:
            if s + 1 < n and done[s] + r - base[s] > cap[s]:     # (the last stage is nobody's source)
                base[s] = low(s)
            k = stages[s]["src"]
            if free[s]:
                done[s] += r
                lo = low(k)
                done[s] -= r
                free[s] = lo > base[k] or done[k] < base[k] + cap[k]
        done[s] += r
    return Sim(most, free, dead, out_fits)


def _phases(geo: list[dict], row_bytes_: list[int]) -> tuple[list[dict], list[int]]:
    """With several rows per call, the calls of a producer and of its reader can be out of step (a 3x3
    reader of rows (2, 3) needs rows 1..4 while the producer writes (4, 5): 5 rows held instead of 4). Try a
    first call of 1 row or of `group` rows for each such stage (at most 2^10 simulations) and keep the
    phases giving the fewest window bytes (ties: the first tried)."""
    multi = [k for k, t in enumerate(geo) if t["group"] > 1][:10]
    best = None
    for mask in range(1 << len(multi)):
        trial = [dict(t) for t in geo]
        for bit, k in enumerate(multi):
            trial[k]["first"] = 1 if mask >> bit & 1 else trial[k]["group"]
        rows = _simulate(trial).most
        size = sum(r * b for r, b in zip(rows[:-1], row_bytes_))
        if best is None or size < best[0]:
            best = (size, trial, rows)
    return best[1], best[2]


def _chain(members: list[Op], sink: Op | None, chain_input: int, readers: dict[int, int], index: int,
           per_call: int = 1):
    """The StreamChain of `members` (+ `sink`), or None when fusing them saves no tensor."""
    stages = _stages(members, readers)
    if len(stages) < 2 and sink is None:
        return None
    stage_of = {members[s[-1]].outputs[0]: k for k, s in enumerate(stages)}

    def source(t: int | None) -> int:
        return NONE if t is None else (CHAIN_INPUT if t == chain_input else stage_of[t])

    geo, src, res = [], [], []
    for s in stages:
        first = members[s[0]]
        g = geom(first)
        src.append(source(first.inputs[0]))
        res.append(source(first.inputs[1] if isinstance(first, ConvAdd) else None))
        odd = g.out_hwc[1] % 2 == 1
        geo.append(dict(in_h=g.in_hwc[0], out_h=g.out_hwc[0], k_h=g.kernel_hw[0], stride=g.stride_hw[0],
                        pad=g.pad_tl[0], src=src[-1], res=res[-1], group=per_call if odd else 1,
                        first=per_call if odd else 1))
    geo, rows = _phases(geo, [row_bytes(members[s[-1]]) for s in stages])
    rows[-1] = geo[-1]["group"] if sink is not None else geo[-1]["out_h"]
    last = sink if sink is not None else members[-1]
    in_rb = geom(members[0]).in_hwc[1] * geom(members[0]).in_hwc[2]
    sim = _simulate(geo, rows, in_rb, row_bytes(members[-1]) if sink is None else 0)
    in_win = [-1] * len(stages)
    if sim.out_fits and in_rb % 4 == 0:
        # In place (the planner's choice: the input dies here), the output takes the input's first bytes
        # (a sink's pixel is written after the last read); then windows go where no reader needs the input
        # any more when their stage first writes, packed in that order (the last stage's: never, it holds
        # the other stages' kernel work space, StreamChain._place).
        oh, ow, oc = geom(members[-1]).out_hwc
        at = a4(sink.in_hwc[2] if sink is not None else oh * ow * oc)
        for k in sorted(range(len(stages) - 1), key=lambda k: (sim.dead[k], k)):
            size = a4(rows[k] * row_bytes(members[stages[k][-1]]))
            if at + size <= sim.dead[k]:
                in_win[k], at = at, at + size
    return StreamChain(index=index, inputs=(chain_input,), outputs=(last.outputs[0],), members=tuple(members),
                       stages=tuple(stages), src=tuple(src), res=tuple(res), sink=sink, rows=tuple(rows),
                       group=tuple(t["group"] for t in geo), first=tuple(t["first"] for t in geo),
                       free=tuple(sim.free), in_win=tuple(in_win), out_in=sim.out_fits)


def _readers(graph: Graph) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for k, op in enumerate(graph.ops):
        for t in op.inputs:
            out.setdefault(t, []).append(k)
    return out


def find_chains(graph: Graph) -> list[list[int]]:
    """Op positions of each chain: from a streamable op, the longest run of consecutive streamable ops that
    reads only the first op's input and tensors made inside the run, each made tensor but the last read only
    inside it (not a graph output, rows of whole words), at most MAX_STAGES ops; then maybe a global average
    pool, the last tensor's only reader."""
    ops, readers = graph.ops, _readers(graph)
    chains, k = [], 0
    while k < len(ops):
        if not _streamable(ops[k]):
            k += 1
            continue
        ext, made, best = ops[k].inputs[0], {}, None
        for j in range(k, min(len(ops), k + MAX_STAGES)):
            op = ops[j]
            if not _streamable(op) or any(t != ext and t not in made for t in op.inputs):
                break
            made[op.outputs[0]] = j
            inside = all(t not in graph.outputs and all(k <= r <= j for r in readers.get(t, []))
                         and row_bytes(ops[p]) % 4 == 0 for t, p in made.items() if p < j)
            if inside:
                best = j
        if best is None:
            k += 1
            continue
        run = list(range(k, best + 1))
        t = ops[best].outputs[0]
        if best + 1 < len(ops) and _global_pool(ops[best + 1]) and readers.get(t) == [best + 1] \
                and t not in graph.outputs and row_bytes(ops[best]) % 4 == 0:
            run.append(best + 1)
        chains.append(run)
        k = run[-1] + 1
    return chains


def stream_graph(graph: Graph, plan: str = "fused") -> Graph:
    """`graph` with every chain worth fusing replaced by one StreamChain step (steps renumbered); the same
    graph when there is none. `plan`: "fused" or "fused2" (ROWS_PER_CALL)."""
    ops, found = list(graph.ops), False
    counts = {t: len(r) for t, r in _readers(graph).items()}
    for pos in reversed(find_chains(graph)):
        members = [graph.ops[k] for k in pos]
        sink = members.pop() if _global_pool(members[-1]) else None
        chain = _chain(members, sink, members[0].inputs[0], counts, pos[0], ROWS_PER_CALL[plan])
        if chain is not None:
            ops[pos[0]:pos[-1] + 1] = [chain]
            found = True
    if not found:
        return graph
    return replace(graph, ops=tuple(replace(op, index=i) for i, op in enumerate(ops)))


def expand_ops(ops, inplace=frozenset()) -> list[tuple[Op, bool]]:
    """(op, runs in place) of every op, each chain followed by its members: what the kernels must hold.
    `inplace`: the op indices the plan runs in place."""
    out = []
    for op in ops:
        out.append((op, op.index in inplace))
        if isinstance(op, StreamChain):
            out.extend(op.member_ops())
    return out


def chains_of(graph: Graph) -> list[str]:
    """The fused steps of a graph, described (empty: the layer-by-layer plan)."""
    return [f"step {op.index}: {op.describe()}" for op in graph.ops if isinstance(op, StreamChain)]
