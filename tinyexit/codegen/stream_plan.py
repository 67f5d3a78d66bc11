"""Fused, row-streamed chains (MCUNetV2 / vMCU style): a run of convolutions, each the only reader of the
previous one's output, optionally ending in a global AVERAGE_POOL_2D, becomes one step (StreamChain) that
computes the chain row by row. Between stages only a window of rows lives (the next stage's kernel height),
never a whole tensor, so the arena holds the chain's input, its output, the windows and the kernels' work.

Stages: each convolution or depthwise convolution is a stage; a 1x1 stride-1 conv that keeps its input's
shape (a DS-CNN pointwise) joins the stage before it and runs in place on the row that stage just wrote into
its output window, so that boundary needs no window. A global average pool at the end is streamed: its
int32 sums are accumulated as the last stage's rows appear, and its output written at the end.

The kernels are the layer-by-layer ones, called on one output row with the tensor bases moved back (see
firmware_templates/kernels/reference/tx_chain.c.j2), with the same params, so the bytes are the layer-by-layer
plan's (and TFLM's). A chain is one step of one unit: the checkpointing runtime cannot commit inside it, so
`generate(plan="fused")` is a choice of the caller (builds that checkpoint keep plan="layers")."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from tinyexit.codegen.ir import CArray, Graph, Op
from tinyexit.codegen.ops._common import a4
from tinyexit.codegen.ops.average_pool_2d import AveragePool2D
from tinyexit.codegen.ops.conv_2d import Conv2D
from tinyexit.codegen.ops.depthwise_conv_2d import DepthwiseConv2D

MAX_STAGES = 16     # TX_CHAIN_MAX_STAGES (firmware_templates/kernels/tx_chain.h.j2)
PLANS = ("layers", "fused")


def _streamable(op: Op) -> bool:
    """A dense conv or depthwise conv the scheduler can run by rows (stride <= kernel height: the rows a
    stage drops per output row were all read)."""
    dense = (type(op) is Conv2D and op.kernel == "tx_conv") or \
        (type(op) is DepthwiseConv2D and op.kernel == "tx_dwconv" and not op.in_pixel)
    return dense and op.stride_hw[0] <= op.kernel_hw[0]


def _joins_in_place(op: Op) -> bool:
    """A 1x1 stride-1 conv whose output has its input's shape: it runs in place on its stage's rows."""
    return type(op) is Conv2D and tuple(op.kernel_hw) == (1, 1) and op.inplace_inputs() == (0,)


def _global_pool(op: Op) -> bool:
    """An average pool with one output pixel whose window (no padding) covers the whole input."""
    if type(op) is not AveragePool2D:
        return False
    ih, iw, _ = op.in_hwc
    return (type(op) is AveragePool2D and tuple(op.out_hw) == (1, 1) and tuple(op.pad_tl) == (0, 0)
            and op.kernel_hw[0] >= ih and op.kernel_hw[1] >= iw)


def _row_bytes(op: Op) -> int:
    _, w, c = op.out_hwc
    return w * c


@dataclass(frozen=True, eq=False)
class StreamChain(Op):
    """One fused step: `members` in run order; `stages` the member positions of each stage (a windowed op,
    then maybe an in-place 1x1); `sink` the streamed global average pool, or None; `rows` the window rows of
    each stage's output (the last: 1 with a sink, else its whole output, written to the output tensor)."""
    members: tuple = ()
    stages: tuple = ()
    sink: Op | None = None
    rows: tuple = ()

    name = "STREAM_CHAIN"
    kernel = "tx_chain"
    headers: ClassVar[tuple[str, ...]] = ("tx_chain.h",)

    def member_ops(self) -> list[tuple[Op, bool]]:
        """(op, runs in place) of every member, the sink last."""
        inplace = {s[1] for s in self.stages if len(s) > 1}
        out = [(op, k in inplace) for k, op in enumerate(self.members)]
        return out + ([(self.sink, False)] if self.sink is not None else [])

    def macs(self) -> int:
        return sum(op.macs() for op, _ in self.member_ops())

    def _windows(self) -> list[int]:
        """Arena offset (inside the chain's buffer) of each stage's output window; the pool sums after."""
        offs, at = [], 0
        for k, s in enumerate(self.stages):
            offs.append(at)
            if k + 1 < len(self.stages) or self.sink is not None:
                at += a4(self.rows[k] * _row_bytes(self.members[s[-1]]))
        return offs + [at]

    def _acc(self) -> tuple[int, str]:
        """Bytes per pool sum and the C suffix of the pool functions: int16 while the window has at most
        256 pixels (|sum| <= 128 * 256), else int32."""
        ih, iw, _ = self.sink.in_hwc
        return (2, "_16") if ih * iw <= 256 else (4, "")

    def scratch_bytes(self, inplace: bool) -> int:
        """The windows and the pool's sums: live during the whole step."""
        acc = a4(self._acc()[0] * self.sink.in_hwc[2]) if self.sink is not None else 0
        return self._windows()[-1] + acc

    def work_bytes(self, kernels: str) -> int:
        """The largest member's in-place ring (a 1x1: one pixel) and kernel work space, after the windows."""
        return max(a4(op.scratch_bytes(ip)) + op.work_bytes(kernels) if op is not self.sink else 0
                   for op, ip in self.member_ops())

    def constants(self, prefix: str) -> list[CArray]:
        return [a for k, op in enumerate(self.members) for a in op.constants(f"{prefix}_{k}")]

    def params_decl(self, prefix: str, inplace: bool) -> str:
        """The members' params, the stage table, the row function and the chain's run function."""
        parts = [op.params_decl(f"{prefix}_{k}", ip) for k, (op, ip) in enumerate(self.member_ops())
                 if op is not self.sink]
        wins, n = self._windows(), len(self.stages)
        table = []
        for k, s in enumerate(self.stages):
            first, last = self.members[s[0]], self.members[s[-1]]
            to_out = int(k + 1 == n and self.sink is None)
            table.append(f"  {{ {first.in_hwc[0]}u, {first.out_hwc[0]}u, {first.kernel_hw[0]}u, "
                         f"{first.stride_hw[0]}u, {first.pad_tl[0]}u, {self.rows[k]}u, {_row_bytes(last)}u, "
                         f"{wins[k]}u, {to_out}u }},")
        parts.append(f"static const tx_chain_stage_t {prefix}_st[{n}] = {{\n" + "\n".join(table) + "\n};")
        cases = []
        for k, s in enumerate(self.stages):
            body = [self.members[s[0]].call(f"{prefix}_{s[0]}", ["in"], "out", "ks")]
            if len(s) > 1:      # the 1x1 in place on the row just written
                body.append(self.members[s[1]].call(f"{prefix}_{s[1]}", ["out"], "out", "ks"))
            if k + 1 == n and self.sink is not None:
                last = self.members[s[-1]]
                _, w, c = last.out_hwc
                size, sfx = self._acc()
                body.append(f"tx_chain_pool_add{sfx}((int{8 * size}_t *)(void *)(buf + {wins[-1]}u), "
                            f"out + (uint32_t)row * {w * c}u, {w}u, {c}u);")
            cases.append(f"    case {k}u:\n" + "".join(f"      {b}\n" for b in body) + "      break;")
        parts.append(
            f"static void {prefix}_row(uint32_t stage, uint32_t row, const int8_t *in, int8_t *out, int8_t *buf,\n"
            f"                          int8_t *ks) {{\n"
            f"  const uint32_t ub = row, ue = row + 1u;  /* the kernels' row range: one output row */\n"
            f"  (void)in;\n  (void)buf;\n  switch (stage) {{\n" + "\n".join(cases) +
            "\n    default:\n      break;\n  }\n}")
        run = [f"static void {prefix}_run(const int8_t *in, int8_t *out, int8_t *buf) {{"]
        ks = f"buf + {a4(self.scratch_bytes(False))}u"
        if self.sink is not None:
            c, (ih, iw, _) = self.sink.in_hwc[2], self.sink.in_hwc
            size, sfx = self._acc()
            run.append(f"  memset(buf + {wins[-1]}u, 0, {size * c}u);")
            run.append(f"  tx_chain_run({prefix}_st, {n}u, in, out, buf, {ks}, {prefix}_row);")
            run.append(f"  tx_chain_pool_out{sfx}((const int{8 * size}_t *)(const void *)(buf + {wins[-1]}u), "
                       f"{c}u, {ih * iw}, {self.sink.act[0]}, {self.sink.act[1]}, out);")
        else:
            run.append(f"  tx_chain_run({prefix}_st, {n}u, in, out, buf, {ks}, {prefix}_row);")
        parts.append("\n".join(run) + "\n}")
        return "\n".join(p for p in parts if p)

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"{prefix}_run({ins[0]}, {out}, {scratch});"

    def describe(self) -> str:
        """One line: the members by stage, e.g. 'CONV_2D | DEPTHWISE_CONV_2D+CONV_2D | ... -> AVERAGE_POOL_2D'."""
        text = " | ".join("+".join(self.members[k].name for k in s) for s in self.stages)
        return text + (f" -> {self.sink.name}" if self.sink is not None else "")


def _stages(members: list[Op]) -> list[tuple[int, ...]]:
    out, k = [], 0
    while k < len(members):
        if k + 1 < len(members) and _joins_in_place(members[k + 1]):
            out.append((k, k + 1))
            k += 2
        else:
            out.append((k,))
            k += 1
    return out


def _chain(members: list[Op], sink: Op | None, index: int) -> StreamChain | None:
    """The StreamChain of `members` (+ `sink`), or None when fusing them saves no tensor."""
    stages = _stages(members)
    if len(stages) < 2 and sink is None:
        return None
    rows = [members[stages[k + 1][0]].kernel_hw[0] for k in range(len(stages) - 1)]
    rows.append(1 if sink is not None else members[stages[-1][-1]].out_hwc[0])
    last = sink if sink is not None else members[-1]
    return StreamChain(index=index, inputs=(members[0].inputs[0],), outputs=(last.outputs[0],),
                       members=tuple(members), stages=tuple(stages), sink=sink, rows=tuple(rows))


def find_chains(graph: Graph) -> list[list[int]]:
    """Op positions of each chain: consecutive streamable ops, each reading the previous one's output
    (its only reader, not a graph output, rows of whole words), at most MAX_STAGES stages, then maybe a
    global average pool."""
    readers: dict[int, int] = {}
    for op in graph.ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    chains, cur = [], []

    def links(prev: Op, op: Op) -> bool:
        t = prev.outputs[0]
        return (op.inputs[0] == t and readers.get(t) == 1 and t not in graph.outputs
                and _row_bytes(prev) % 4 == 0)

    for k, op in enumerate(graph.ops):
        if cur and links(graph.ops[cur[-1]], op):
            if _global_pool(op):
                chains.append(cur + [k])
                cur = []
                continue
            if _streamable(op) and len(_stages([graph.ops[i] for i in cur + [k]])) <= MAX_STAGES:
                cur.append(k)
                continue
        if cur:
            chains.append(cur)
        cur = [k] if _streamable(op) else []
    if cur:
        chains.append(cur)
    return chains


def stream_graph(graph: Graph) -> Graph:
    """`graph` with every chain worth fusing replaced by one StreamChain step (steps renumbered); the same
    graph when there is none."""
    ops, found = list(graph.ops), False
    for pos in reversed(find_chains(graph)):
        members = [graph.ops[k] for k in pos]
        sink = members.pop() if _global_pool(members[-1]) else None
        chain = _chain(members, sink, pos[0])
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
