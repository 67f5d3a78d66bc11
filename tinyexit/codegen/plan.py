"""Stage 2: tensor lifetimes -> arena offsets.

Buffers are activation tensors, merged when an op's output may share its input's bytes (RESHAPE alias;
in-place conv/depthwise/add when the input dies at that op), plus one short-lived scratch buffer per op
that needs it: the in-place ring (kept across the step's units: in `live`) followed by the kernel's work
space (`Op.work_bytes`: tables and columns an optimized kernel variant rebuilds at every call; it occupies
bytes only during its step and is never in `live`). Each buffer lives from the step that writes it to the
last step that reads it (the model input from step 0, the model output to the last step). Placement is
greedy by size, first fit below any buffer whose lifetime overlaps.

Chained models (`pinned`, `keep_input`): a model that reads another model's output where it lies gets its
input pinned at that offset; an exit head (`keep_input`) must also leave it intact for the next reader, so
its input lives to the last step and no op writes over it (no in-place op, no scratch or activation there).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tinyexit.codegen.ir import Graph
from tinyexit.errors import TinyexitError

ALIGN = 4  # offsets on 4 bytes: word loads in optimized kernels, cheap memcpy


def _align(x: int) -> int:
    return (x + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class Plan:
    arena_bytes: int
    offsets: dict[int, int]                         # tensor id -> arena offset
    scratch: dict[int, tuple[int, int]]             # op index -> (offset, bytes): ring, then kernel work space
    work: dict[int, tuple[int, int]]                # op index -> (offset, bytes) of the kernel work space
    inplace: dict[int, int]                         # op index -> the input tensor its output overwrites
    live: tuple[tuple[tuple[int, int], ...], ...]   # per step: merged (offset, size) ranges
    lifetimes: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # tensor id -> (first, last step)

    @property
    def work_bytes(self) -> int:
        """The largest kernel work space of one step (inside `arena_bytes`)."""
        return max((b for _, b in self.work.values()), default=0)


@dataclass
class _Buf:
    """Tensors sharing one start offset; each keeps its own size and lifetime (a rectangle), so a buffer
    that shrinks after an in-place op frees the rest of its bytes for later tensors."""
    rects: list[tuple[int, int, int]]   # (size, first step, last step)
    offset: int = -1
    live_cap: int | None = None         # bytes that hold data across units (scratch: the ring, not the work)

    @property
    def size(self) -> int:
        return max(r[0] for r in self.rects)

    @property
    def start(self) -> int:
        return min(r[1] for r in self.rects)

    def size_at(self, step: int) -> int:
        """Bytes live at `step` (needed across its units)."""
        n = max((r[0] for r in self.rects if r[1] <= step <= r[2]), default=0)
        return n if self.live_cap is None else min(n, self.live_cap)


def plan_memory(graph: Graph, *, inplace: bool = True, pinned: Mapping[int, int] | None = None,
                keep_input: bool = False, kernels: str = "reference") -> Plan:
    """`pinned`: tensor id -> arena offset it must have (the model input where another model left it);
    `keep_input`: the model's input is read again after the model (by the next model of a chain): it is
    never written and stays live through the last step. `kernels`: the kernel variant (its work space)."""
    n = len(graph.ops)
    tensors = graph.tensors
    parent: dict[int, int] = {}

    def find(t: int) -> int:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    last_use: dict[int, int] = {}
    for op in graph.ops:
        for t in op.inputs:
            last_use[t] = op.index
    for t in graph.outputs:
        last_use[t] = n - 1
    kept = set(graph.inputs) if keep_input else set()
    for t in kept:
        last_use[t] = n - 1

    members: dict[int, list[int]] = {}
    def_step: dict[int, int] = {t: 0 for t in graph.inputs}
    for t in graph.inputs:
        members[t] = [t]
    inplace_ops: dict[int, int] = {}
    for op in graph.ops:
        out = op.outputs[0]
        for t in op.inputs:
            if t == out or find(t) not in members:    # validate.check refuses such files; a graph built by hand
                raise TinyexitError(f"op {op.index} ({op.name}) reads tensor {t} before any step writes it; "
                                    f"the steps must run in an order where every input is written first.")
        def_step[out] = op.index
        root = None
        if op.is_alias():
            root = find(op.inputs[0])
        elif inplace:
            for pos in op.inplace_inputs():
                r = find(op.inputs[pos])
                others = [find(t) for k, t in enumerate(op.inputs) if k != pos]
                if (r not in graph.outputs and r not in kept and r not in others  # another operand in the same bytes: no
                        and tensors[out].nbytes <= tensors[op.inputs[pos]].nbytes
                        and all(last_use.get(m, -1) <= op.index for m in members[r])
                        and not any(find(t) == r for t in graph.outputs)):
                    root = r
                    inplace_ops[op.index] = op.inputs[pos]
                    break
        if root is None:
            members[out] = [out]
        else:
            parent[out] = root
            members[root].append(out)

    bufs: dict[object, _Buf] = {}
    for root, ms in members.items():
        bufs[root] = _Buf(rects=[(tensors[m].nbytes, def_step[m], max(last_use.get(m, def_step[m]), def_step[m]))
                                 for m in ms])
    work: dict[int, tuple[int, int]] = {}   # op index -> (bytes after the buffer's offset, work bytes)
    for op in graph.ops:
        ring, w = op.scratch_bytes(op.index in inplace_ops), op.work_bytes(kernels)
        if ring or w:
            start = op.work_offset(op.index in inplace_ops, kernels) if w else ring
            bufs[("scratch", op.index)] = _Buf(rects=[(max(start + w, ring), op.index, op.index)], live_cap=ring)
            if w:
                work[op.index] = (start, w)

    def clash(a: _Buf, b: _Buf) -> int:
        """Bytes from b's offset that a must avoid: the largest b rectangle alive with any a rectangle."""
        return max((rb[0] for ra in a.rects for rb in b.rects if ra[1] <= rb[2] and rb[1] <= ra[2]), default=0)

    fixed: dict[int, int] = {}
    for t, off in (pinned or {}).items():
        b = bufs[find(t)]
        if fixed.setdefault(id(b), off) != off:
            raise ValueError(f"tensors pinned at {fixed[id(b)]} and {off} share one buffer")

    def place(order: list[_Buf]) -> int:
        placed: list[_Buf] = []
        for b in order:
            if id(b) in fixed:
                b.offset = fixed[id(b)]
                placed.append(b)
        for b in order:
            if id(b) in fixed:
                continue
            busy = sorted((p.offset, p.offset + c) for p in placed if (c := clash(b, p)))
            off = 0
            for lo, hi in busy:
                if off + b.size <= lo:
                    break
                off = max(off, _align(hi))
            b.offset = off
            placed.append(b)
        return max((b.offset + b.size for b in placed), default=0)

    # First fit in a few orders (greedy by size, as TFLM does, is not always the tightest); keep the best.
    items = list(bufs.values())
    end = {id(b): max(r[2] for r in b.rects) for b in items}
    orders = [
        sorted(items, key=lambda b: (-b.size, b.start)),                          # largest first
        sorted(items, key=lambda b: (b.start, -b.size)),                          # execution order
        sorted(items, key=lambda b: (-b.size * (end[id(b)] - b.start + 1), b.start)),  # largest area first
        sorted(items, key=lambda b: (-(end[id(b)] - b.start), -b.size, b.start)),  # longest lived first
    ]
    best = None
    for order in orders:
        arena = place(order)
        if best is None or arena < best[0]:
            best = (arena, {id(b): b.offset for b in items})
    arena = best[0]
    for b in items:
        b.offset = best[1][id(b)]

    offsets = {t: bufs[find(t)].offset for t in def_step}
    scratch = {k[1]: (b.offset, b.size) for k, b in bufs.items() if isinstance(k, tuple)}
    work = {i: (scratch[i][0] + start, w) for i, (start, w) in work.items()}
    live = []
    for i in range(n):
        ranges = sorted((b.offset, b.offset + b.size_at(i)) for b in bufs.values() if b.size_at(i))
        merged: list[list[int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        live.append(tuple((lo, hi - lo) for lo, hi in merged))
    lifetimes = {t: (def_step[t], max(last_use.get(t, def_step[t]), def_step[t])) for t in def_step}
    return Plan(arena_bytes=arena, offsets=offsets, scratch=scratch, work=work, inplace=inplace_ops,
                live=tuple(live), lifetimes=lifetimes)


def memory_map(graph: Graph, plan: Plan) -> dict:
    """The plan as data (report.json, `tinyexit profile`): every activation tensor as a rectangle (arena
    offset, bytes, first and last step it is live; `shares`: the tensor whose bytes it reuses, through an alias
    or an in-place op, else None), every step's scratch (ring + kernel work: live during that step only), and
    per step the (tensor, offset, bytes) of its inputs and output and its weight bytes."""
    shares = {}
    for op in graph.ops:
        if op.is_alias():
            shares[op.outputs[0]] = op.inputs[0]
        elif op.index in plan.inplace:
            shares[op.outputs[0]] = plan.inplace[op.index]
    t = graph.tensors
    tensors = [{"tensor": k, "name": t[k].name, "offset": plan.offsets[k], "bytes": t[k].nbytes,
                "first": first, "last": last, "shares": shares.get(k)}
               for k, (first, last) in sorted(plan.lifetimes.items())]
    scratch = [{"step": s, "offset": off, "bytes": n} for s, (off, n) in sorted(plan.scratch.items()) if n]
    steps = [{"inputs": [[k, plan.offsets[k], t[k].nbytes] for k in op.inputs],
              "output": [op.outputs[0], plan.offsets[op.outputs[0]], t[op.outputs[0]].nbytes],
              "scratch": list(plan.scratch.get(op.index, (0, 0))),
              "weight_bytes": sum(a.nbytes for a in op.constants(f"m_{op.index}"))} for op in graph.ops]
    return {"tensors": tensors, "scratch": scratch, "steps": steps}
