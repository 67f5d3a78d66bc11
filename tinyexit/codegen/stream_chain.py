"""StreamChain: one step running a fused, row-streamed chain of convolution stages (planned by
tinyexit.codegen.stream_plan) through the tx_chain scheduler (firmware_templates/kernels/reference/tx_chain.c.j2).

A stage is a conv, a depthwise conv or a conv with a fused residual ADD, maybe followed by a 1x1 stride-1
conv of the same shape that runs in place on the row the stage just wrote. Each stage's output rows live in a
window of `rows` rows (enough for every reader: stream_plan.window_rows simulates the scheduler); a stage reads
its input from the chain's input tensor or from another stage's window, and a fused ADD its residual the same
way. The last stage writes the chain's output tensor, or feeds a streamed global average pool (`sink`) whose
sums are accumulated row by row. The kernels are the layer-by-layer ones on one output row each, with the
same params, so the bytes are the layer-by-layer plan's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tinyexit.codegen.ir import CArray, Op
from tinyexit.codegen.ops._common import a4
from tinyexit.codegen.ops.conv_add import ConvAdd

NONE, CHAIN_INPUT = -2, -1      # a stage's source: none (no residual) or the chain's input tensor


def geom(op: Op) -> Op:
    """The conv-like op holding the window geometry (a fused CONV_2D+ADD: its conv)."""
    return op.conv if isinstance(op, ConvAdd) else op


def row_bytes(op: Op) -> int:
    _, w, c = geom(op).out_hwc
    return w * c


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
        # With a streamed pool the output (one pixel) is written only after the last input row was read.
        return (0,) if self.sink is not None else ()

    def windows(self) -> list[int]:
        """Offset (inside the chain's buffer) of each stage's output window, then of the pool sums."""
        offs, at = [], 0
        for k, s in enumerate(self.stages):
            offs.append(at)
            if k + 1 < len(self.stages) or self.sink is not None:
                at += a4(self.rows[k] * row_bytes(self.members[s[-1]]))
        return offs + [at]

    def _acc(self) -> tuple[int, str]:
        """Bytes per pool sum and the C suffix of the pool functions: int16 while the window has at most
        256 pixels (|sum| <= 128 * 256), else int32."""
        ih, iw, _ = self.sink.in_hwc
        return (2, "_16") if ih * iw <= 256 else (4, "")

    def scratch_bytes(self, inplace: bool) -> int:
        """The windows and the pool's sums: live during the whole step."""
        acc = a4(self._acc()[0] * self.sink.in_hwc[2]) if self.sink is not None else 0
        return self.windows()[-1] + acc

    def work_bytes(self, kernels: str) -> int:
        """The largest member's in-place ring (a 1x1: one pixel) and kernel work space (Op.work_offset: after
        the ring or over it), after the windows."""
        return max(max(op.work_offset(ip, kernels) + op.work_bytes(kernels), a4(op.scratch_bytes(ip)))
                   for op, ip in self.member_ops())

    def constants(self, prefix: str) -> list[CArray]:
        return [a for k, op in enumerate(self.members) for a in op.constants(f"{prefix}_{k}")]

    def _table(self, prefix: str) -> str:
        wins, n, table = self.windows(), len(self.stages), []
        for k, s in enumerate(self.stages):
            first = geom(self.members[s[0]])
            to_out = int(k + 1 == n and self.sink is None)
            table.append(f"  {{ {first.in_hwc[0]}u, {first.out_hwc[0]}u, {first.kernel_hw[0]}u, "
                         f"{first.stride_hw[0]}u, {first.pad_tl[0]}u, {self.rows[k]}u, "
                         f"{row_bytes(self.members[s[-1]])}u, {wins[k]}u, {self.group[k]}u, {self.first[k]}u, {self.src[k]}, "
                         f"{self.res[k]}, {to_out}u }},")
        return f"static const tx_chain_stage_t {prefix}_st[{n}] = {{\n" + "\n".join(table) + "\n};"

    def _row_function(self, prefix: str) -> str:
        wins, n, cases = self.windows(), len(self.stages), []
        for k, s in enumerate(self.stages):
            body = [self.members[s[0]].call(f"{prefix}_{s[0]}", ["in", "res"], "out", "ks")]
            if len(s) > 1:      # the 1x1 in place on the row just written
                body.append(self.members[s[1]].call(f"{prefix}_{s[1]}", ["out"], "out", "ks"))
            if k + 1 == n and self.sink is not None:
                _, w, c = geom(self.members[s[-1]]).out_hwc
                size, sfx = self._acc()
                body.append(f"tx_chain_pool_add{sfx}((int{8 * size}_t *)(void *)(buf + {wins[-1]}u), "
                            f"out + (uint32_t)row * {w * c}u, rows * {w}u, {c}u);")
            cases.append(f"    case {k}u:\n" + "".join(f"      {b}\n" for b in body) + "      break;")
        return (f"static void {prefix}_row(uint32_t stage, uint32_t row, uint32_t rows, const int8_t *in,\n"
                f"                          const int8_t *res, int8_t *out, int8_t *buf, int8_t *ks) {{\n"
                f"  const uint32_t ub = row, ue = row + rows;  /* the kernels' row range */\n"
                f"  (void)in;\n  (void)res;\n  (void)buf;\n  switch (stage) {{\n" + "\n".join(cases) +
                "\n    default:\n      break;\n  }\n}")

    def params_decl(self, prefix: str, inplace: bool) -> str:
        """The members' params, the stage table, the row function and the chain's run function."""
        parts = [op.params_decl(f"{prefix}_{k}", ip) for k, (op, ip) in enumerate(self.member_ops())]
        parts += [self._table(prefix), self._row_function(prefix)]
        n, wins = len(self.stages), self.windows()
        ks = f"buf + {a4(self.scratch_bytes(False))}u"
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
