"""StreamChain: one step running a fused, row-streamed chain of convolution stages (planned by
tinyexit.codegen.stream_plan) through the tx_chain scheduler (firmware_templates/kernels/reference/tx_chain.c.j2).

A stage is a conv, a depthwise conv or a conv with a fused residual ADD, maybe followed by a 1x1 stride-1
conv of the same shape that runs in place on the row the stage just wrote. Each stage's output rows live in a
window of `rows` rows (enough for every reader: stream_plan.window_rows simulates the scheduler); a stage reads
its input from the chain's input tensor or from another stage's window, and a fused ADD its residual the same
way. The last stage writes the chain's output tensor, or feeds a streamed global average pool (`sink`) whose
sums are accumulated row by row. The kernels are the layer-by-layer ones on one output row each, with the
same params, so the bytes are the layer-by-layer plan's. Where each member's kernel works: `_place`; which
windows lie in the input when the chain runs in place: `in_win` (tinyexit.codegen.stream_plan)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tinyexit.codegen.ir import CArray, Op
from tinyexit.codegen.ops._common import M4, a4
from tinyexit.codegen.ops.conv_add import ConvAdd

NONE, CHAIN_INPUT = -2, -1      # a stage's source: none (no residual) or the chain's input tensor
VARIANTS = ("reference", M4)    # the kernel variants whose needs a member's scratch placement must cover


def geom(op: Op) -> Op:
    """The conv-like op holding the window geometry (a fused CONV_2D+ADD: its conv)."""
    return op.conv if isinstance(op, ConvAdd) else op


def row_bytes(op: Op) -> int:
    _, w, c = geom(op).out_hwc
    return w * c


def _need(op: Op, inplace: bool, kernels: str) -> int:
    """Bytes a member's kernel uses from its scratch pointer: its ring, and its work space (Op.work_offset)."""
    return max(op.work_offset(inplace, kernels) + op.work_bytes(kernels), a4(op.scratch_bytes(inplace)))


@dataclass(frozen=True, eq=False)
class StreamChain(Op):
    """`members` in run order; `stages` the member positions of each stage; `src` / `res` per stage the stage
    whose window holds its input / its fused ADD's residual (CHAIN_INPUT, or NONE for no residual); `sink`
    the streamed global average pool or None; `rows` the window rows of each stage's output (the last stage:
    its rows per call with a sink, else its whole output, written to the output tensor)."""
    members: tuple = ()
    stages: tuple = ()
    src: tuple = ()
    res: tuple = ()
    sink: Op | None = None
    rows: tuple = ()
    group: tuple = ()               # output rows per kernel call, per stage (stream_plan.ROWS_PER_CALL)
    first: tuple = ()               # rows of each stage's first call (stream_plan._phases)
    free: tuple = ()                # per stage: a row of its source window is free at every call once its
    #                                 first op ran (stream_plan._simulate): its in-place 1x1 works there
    in_win: tuple = ()              # per stage: its window's offset inside the chain's input when the chain
    #                                 runs in place, where no reader needs the input any more (-1: in the buffer)
    out_in: bool = False            # the output may take the input's first bytes (stream_plan._simulate)

    name = "STREAM_CHAIN"
    kernel = "tx_chain"
    headers: ClassVar[tuple[str, ...]] = ("tx_chain.h",)

    def member_ops(self) -> list[tuple[Op, bool]]:
        """(op, runs in place) of every member whose kernel runs (not the sink: the chain sums its input)."""
        inplace = {s[1] for s in self.stages if len(s) > 1}
        return [(op, k in inplace) for k, op in enumerate(self.members)]

    def macs(self) -> int:
        return sum(op.macs() for op in self.members) + (self.sink.macs() if self.sink is not None else 0)

    def pool_sums(self) -> int:
        """Bytes of one pool sum (2: int16, 4: int32); 0 without a sink."""
        return self._acc()[0] if self.sink is not None else 0

    def inplace_inputs(self) -> tuple[int, ...]:
        # With a streamed pool the output (one pixel) is written only after the last input row was read;
        # without, each output row only over input rows no stage reads any more (out_in).
        return (0,) if self.sink is not None or self.out_in else ()

    def _in_input(self, k: int, inplace: bool) -> bool:
        """Stage k's window lies in the chain's input (only when the chain runs in place: the input dies here)."""
        return inplace and bool(self.in_win) and self.in_win[k] >= 0

    def _window_bytes(self, k: int) -> int:
        return a4(self.rows[k] * row_bytes(self.members[self.stages[k][-1]]))

    def _layout(self, inplace: bool = False) -> tuple[list[int], int, int]:
        """Offsets of the stages' output windows (in the buffer, or in the input: _in_input) and of the pool
        sums, and the end of the buffer (where `ks` starts). With a sink the last window comes last, just
        before `ks`: its rows live only within the last stage's calls, so the other stages' kernels work from
        its start on (`_place`)."""
        offs, at, n = [], 0, len(self.stages)
        for k in range(n - 1):
            if self._in_input(k, inplace):
                offs.append(self.in_win[k])
                continue
            offs.append(at)
            at += self._window_bytes(k)
        if self.sink is None:
            return offs + [at], at, at          # the last stage writes the output tensor
        pool = at
        at += a4(self._acc()[0] * self.sink.in_hwc[2])
        return offs + [at], pool, at + self._window_bytes(n - 1)

    def windows(self, inplace: bool = False) -> list[int]:
        """Offset (inside the chain's buffer, or its input: _in_input) of each stage's output window, then of
        the pool sums."""
        offs, pool, _ = self._layout(inplace)
        return offs + [pool]

    def _place(self, k: int, pos: int) -> str:
        """Where member `pos` of stage k works (its ring, then its work space): "fs", a free row of the stage's
        source window (its in-place 1x1, when `free` holds and a row covers every variant's need); "last", the
        last window's start (a stage before the last in a chain with a sink); else "ks", after the buffer."""
        op, ip = self.member_ops()[self.stages[k][pos]]
        if pos == 1 and self.free and self.free[k] and self.src[k] >= 0 and max(
                _need(op, ip, v) for v in VARIANTS) <= row_bytes(self.members[self.stages[self.src[k]][-1]]):
            return "fs"
        return "last" if self.sink is not None and k + 1 < len(self.stages) else "ks"

    def _acc(self) -> tuple[int, str]:
        """Bytes per pool sum and the C suffix of the pool functions: int16 while the window has at most
        256 pixels (|sum| <= 128 * 256), else int32."""
        ih, iw, _ = self.sink.in_hwc
        return (2, "_16") if ih * iw <= 256 else (4, "")

    def scratch_bytes(self, inplace: bool) -> int:
        """The windows in the buffer and the pool's sums: live during the whole step."""
        return self._layout(inplace)[2]

    def work_bytes(self, kernels: str) -> int:
        """`ks`: the most any member's ring and kernel work space (_need) reach past the buffer, placed as
        `_place` says."""
        last = self._window_bytes(len(self.stages) - 1) if self.sink is not None else 0
        out = 0
        for k, s in enumerate(self.stages):
            for pos, m in enumerate(s):
                op, ip = self.member_ops()[m]
                at = self._place(k, pos)
                out = max(out, 0 if at == "fs" else _need(op, ip, kernels) - (last if at == "last" else 0))
        return out

    def constants(self, prefix: str) -> list[CArray]:
        return [a for k, op in enumerate(self.members) for a in op.constants(f"{prefix}_{k}")]

    def _table(self, prefix: str, inplace: bool) -> str:
        wins, n, table = self.windows(inplace), len(self.stages), []
        for k, s in enumerate(self.stages):
            first = geom(self.members[s[0]])
            to_out = int(k + 1 == n and self.sink is None)
            fs = int(any(self._place(k, pos) == "fs" for pos in range(len(s))))
            table.append(f"  {{ {first.in_hwc[0]}u, {first.out_hwc[0]}u, {first.kernel_hw[0]}u, "
                         f"{first.stride_hw[0]}u, {first.pad_tl[0]}u, {self.rows[k]}u, "
                         f"{row_bytes(self.members[s[-1]])}u, {wins[k]}u, {self.group[k]}u, {self.first[k]}u, {self.src[k]}, "
                         f"{self.res[k]}, {to_out}u, {fs}u, {int(self._in_input(k, inplace))}u }},")
        return f"static const tx_chain_stage_t {prefix}_st[{n}] = {{\n" + "\n".join(table) + "\n};"

    def _row_function(self, prefix: str, inplace: bool) -> str:
        wins, n, cases = self.windows(inplace), len(self.stages), []
        at = {"fs": "fs", "ks": "ks", "last": f"buf + {wins[-2] if self.sink is not None else 0}u"}
        for k, s in enumerate(self.stages):
            body = [self.members[s[0]].call(f"{prefix}_{s[0]}", ["in", "res"], "out", at[self._place(k, 0)])]
            if len(s) > 1:      # the 1x1 in place on the row just written
                body.append(self.members[s[1]].call(f"{prefix}_{s[1]}", ["out"], "out", at[self._place(k, 1)]))
            if k + 1 == n and self.sink is not None:
                _, w, c = geom(self.members[s[-1]]).out_hwc
                size, sfx = self._acc()
                body.append(f"tx_chain_pool_add{sfx}((int{8 * size}_t *)(void *)(buf + {wins[-1]}u), "
                            f"out + (uint32_t)row * {w * c}u, rows * {w}u, {c}u);")
            cases.append(f"    case {k}u:\n" + "".join(f"      {b}\n" for b in body) + "      break;")
        return (f"static void {prefix}_row(uint32_t stage, uint32_t row, uint32_t rows, const int8_t *in,\n"
                f"                          const int8_t *res, int8_t *out, int8_t *buf, int8_t *ks, int8_t *fs) {{\n"
                f"  const uint32_t ub = row, ue = row + rows;  /* the kernels' row range */\n"
                f"  (void)in;\n  (void)res;\n  (void)buf;\n  (void)ks;\n  (void)fs;\n  switch (stage) {{\n" + "\n".join(cases) +
                "\n    default:\n      break;\n  }\n}")

    def params_decl(self, prefix: str, inplace: bool) -> str:
        """The members' params, the stage table, the row function and the chain's run function."""
        parts = [op.params_decl(f"{prefix}_{k}", ip) for k, (op, ip) in enumerate(self.member_ops())]
        parts += [self._table(prefix, inplace), self._row_function(prefix, inplace)]
        n, wins = len(self.stages), self.windows(inplace)
        ks = f"buf + {a4(self.scratch_bytes(inplace))}u"
        run = [f"static void {prefix}_run(const int8_t *in, int8_t *out, int8_t *buf) {{"]
        call = f"  tx_chain_run({prefix}_st, {n}u, in, out, buf, {ks}, {prefix}_row);"
        if self.sink is not None:
            c, (ih, iw, _) = self.sink.in_hwc[2], self.sink.in_hwc
            size, sfx = self._acc()
            run += [f"  memset(buf + {wins[-1]}u, 0, {size * c}u);", call,
                    f"  tx_chain_pool_out{sfx}((const int{8 * size}_t *)(const void *)(buf + {wins[-1]}u), "
                    f"{c}u, {ih * iw}, {self.sink.act[0]}, {self.sink.act[1]}, out);"]
        else:
            run.append(call)
        parts.append("\n".join(run) + "\n}")
        return "\n".join(p for p in parts if p)

    def call(self, prefix: str, ins: list[str], out: str, scratch: str) -> str:
        return f"{prefix}_run({ins[0]}, {out}, {scratch});"

    def describe(self) -> str:
        """One line: the stages, e.g. 'CONV_2D | DEPTHWISE_CONV_2D+CONV_2D | ... -> AVERAGE_POOL_2D'."""
        text = " | ".join("+".join(self.members[k].name.replace("+ADD", "(+ADD)") for k in s) for s in self.stages)
        return text + (f" -> {self.sink.name}" if self.sink is not None else "")
