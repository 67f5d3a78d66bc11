"""Which code paths of the kernels a library needs, decided from its ops at generation time, so that the
templates emit only those (the cortex_m4 variant's code is mostly special cases: channel tails, exact
requantization, in-place rings, kernel sizes). Each flag is True when at least one op of the library
takes that path at run time; the C kernels take the same decisions from the same params, so a flag that
is False means the path is dead code for this library.

The requantization predicate mirrors `tx_rq_make_bound` (firmware_templates/kernels/cortex_m4/_requant.h.j2):
keep both in step."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyexit.codegen.ir import Graph, Op
from tinyexit.codegen.plan import Plan
from tinyexit.codegen.stream_plan import expand_ops


def rq_needs_exact(mult: int, shift: int, bound: int) -> bool:
    """tx_rq_make_bound's result: True when the fast requantization (SMMULR) is not proven exact for every
    accumulator with |acc| <= bound (right shift > 22, left shift >= 30, or |acc| << (left + 1) may overflow)."""
    del mult  # the fast path's exactness does not depend on the multiplier (m >= 0)
    left, right = max(shift, 0), max(-shift, 0)
    return right > 22 or left >= 30 or bound >= (1 << (30 - left))


def conv_needs_exact(bias, mult, shift, taps: int) -> bool:
    """tx_rq_make over a conv-like op's channels: bound |bias| + taps * 255 * 128."""
    return any(rq_needs_exact(m, s, abs(int(bias[c]) if bias is not None else 0) + taps * 255 * 128)
               for c, (m, s) in enumerate(zip(mult, shift)))


def add_needs_exact(add) -> bool:
    """tx_add_prepare's tx_add_exact for a fused ADD."""
    gain = lambda s: 1 << max(s, 0)  # noqa: E731
    x = 255 << add.left_shift
    total = x * (gain(add.m1[1]) + gain(add.m2[1])) + 2
    return (add.left_shift > 24 or rq_needs_exact(add.m1[0], add.m1[1], x) or rq_needs_exact(add.m2[0], add.m2[1], x)
            or rq_needs_exact(add.mo[0], add.mo[1], total))


@dataclass(frozen=True)
class KernelFeatures:
    # CONV_2D (and CONV_2D+ADD) in the cortex_m4 variant
    conv_direct: bool = False       # a 1x1 conv (its patch is the input pixel)
    conv_im2col: bool = False       # a conv larger than 1x1 (patches gathered)
    conv_ring: bool = False         # ... of those, one in place (input pixels read from the ring)
    conv_pair: bool = False         # tx_conv_pair (C): odd channels, k % 8 != 0, one channel, exact rq
    conv_exact: bool = False        # a conv channel needs tx_mbqm (tx_conv_exact)
    add_exact: bool = False         # a fused ADD needs tx_add_elem (tx_add_exact)
    conv_clamp: bool = False        # a conv with an activation range narrower than int8 (tx_conv_passes clamps)
    conv_passes: bool = False       # a conv takes tx_conv_passes / tx_conv_pair (not the wide stream)
    conv_wide: bool = False         # a conv takes tx_conv_wpasses (Conv2D.wide: 4 pixels x 2 channels)
    conv_wide_rows: bool = False    # ... an im2col one, not in place, whose patch rows are >= 16 bytes, words
    conv_wide_part: bool = False    # ... a 1x1 or in-place one whose patch length k is not a multiple of 4
    conv_wide_words: bool = False   # ... an im2col one, not in place, whose patch rows are not whole words
    #                                 (k % 4 != 0 implies it for an im2col conv not in place: seg % 4 != 0)
    # DEPTHWISE_CONV_2D
    dw_groups9: bool = False        # 3x3 groups of 4 channels (assembly)
    dw_groups: bool = False         # groups of 4 channels with another kernel size (C tap loop)
    dw_rest: bool = False           # channel tails, depth multiplier > 1, exact rq (reference arithmetic)
    dw_exact: bool = False          # a depthwise channel needs tx_mbqm (tx_dw_exact)
    dw_clamp: bool = False          # a 3x3 group path with an activation range narrower than int8
    dw_rows: bool = False           # the 3x3 stride-1 row path (tx_dw_rows, assembly)
    dw_rows_tail: bool = False      # ... with channels past the last group of 4 (C)
    dw_rows_clamp: bool = False     # ... with an activation range narrower than int8
    dw_old: bool = False            # some depthwise conv takes the tap-list paths (all the above but dw_rows*)
    dw_ring: bool = False           # ... of those, one in place (input pixels read from the ring)
    # AVERAGE_POOL_2D / MAX_POOL_2D
    pool_avg: bool = False
    pool_avg_ref: bool = False      # cortex_m4: channels % 4 != 0 or a window above 255 pixels
    pool_max: bool = False
    # a fused chain's streamed global average pool (stream_chain.StreamChain): int16 / int32 sums
    chain_pool16: bool = False
    chain_pool32: bool = False
    # CONV_2D with sparse weights (tinyexit.codegen.sparse) in the cortex_m4 variant
    sparse_conv_im2col: bool = False   # a kernel larger than 1x1 (patches gathered)
    sparse_conv_ring: bool = False     # ... of those, one in place
    sparse_conv_exact: bool = False    # a channel needs tx_mbqm
    # FULLY_CONNECTED in the cortex_m4 variant
    fc_left: bool = False           # a row tx_fc_blocks4 requantizes has shift >= 0 (its general requantization)
    fc_g4: bool = False             # ... a layer it runs has in % 8 >= 4 (a group of 4 after the 8-input passes)
    fc_tail: bool = False           # ... a layer it runs has in % 4 != 0 (tail inputs)
    fc_rest: bool = False           # rows tx_fc_s8 runs in C: out % 4 != 0 or a layer needing tx_mbqm
    fc_exact: bool = False          # a layer needs tx_mbqm

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


def _conv_flags(op: Op, inplace: bool) -> dict[str, bool]:
    c = getattr(op, "conv", op)        # CONV_2D+ADD: the conv part
    (kh, kw), ic, oc = c.kernel_hw, c.in_hwc[2], c.out_hwc[2]   # a fused conv never runs in place itself
    k = kh * kw * ic
    exact = conv_needs_exact(c.bias, c.mult, c.shift, k)
    direct = (kh, kw) == (1, 1)
    if getattr(c, "wide", False):    # tx_conv_wide: its own requantization, no pair or exact path
        ring = not direct and c.ring_pixels(inplace and c is op) > 0
        seg = kw * ic
        return dict(conv_wide=True, conv_im2col=not direct, conv_ring=ring,
                    conv_wide_rows=not direct and not ring and seg % 4 == 0 and seg >= 16,
                    conv_wide_part=k % 4 != 0 and (direct or ring),
                    conv_wide_words=not direct and not ring and seg % 4 != 0,
                    add_exact=op.name == "CONV_2D+ADD" and add_needs_exact(op.add))
    # tx_conv_s8: the assembly passes run channel pairs when !exact && oc >= 2 && (k % 8 == 0 || oc >= 4);
    # tx_conv_pair takes every channel they leave.
    return dict(conv_passes=True, conv_direct=direct, conv_im2col=not direct, conv_ring=not direct and c.ring_pixels(inplace and c is op) > 0,
                conv_pair=exact or oc < 2 or oc % 2 == 1 or k % 8 != 0, conv_exact=exact,
                conv_clamp=c.act[0] > -128 or c.act[1] < 127,
                add_exact=op.name == "CONV_2D+ADD" and add_needs_exact(op.add))


def _dw_flags(op: Op, inplace: bool) -> dict[str, bool]:
    if getattr(op, "rows", False):
        return dict(dw_rows=True, dw_rows_tail=op.in_hwc[2] % 4 != 0,
                    dw_rows_clamp=op.act[0] > -128 or op.act[1] < 127)
    taps = op.kernel_hw[0] * op.kernel_hw[1]
    exact = conv_needs_exact(op.bias, op.mult, op.shift, taps)
    groups = op.depth_multiplier == 1 and not exact and op.in_hwc[2] >= 4
    return dict(dw_old=True, dw_ring=op.ring_pixels(inplace) > 0,
                dw_groups9=groups and taps == 9, dw_groups=groups and taps != 9,
                dw_rest=exact or op.depth_multiplier != 1 or op.in_hwc[2] % 4 != 0, dw_exact=exact,
                dw_clamp=groups and taps == 9 and (op.act[0] > -128 or op.act[1] < 127))


def _pool_flags(op: Op) -> dict[str, bool]:
    if op.name == "MAX_POOL_2D":
        return dict(pool_max=True)
    return dict(pool_avg=True, pool_avg_ref=op.in_hwc[2] % 4 != 0 or op.kernel_hw[0] * op.kernel_hw[1] > 255)


def _sparse_conv_flags(op: Op, inplace: bool) -> dict[str, bool]:
    im2col = tuple(op.kernel_hw) != (1, 1)
    # tx_spc_prepare's bound: |bias| + (the channel's stored entries) * 255 * 128
    exact = any(rq_needs_exact(m, s, abs(int(op.bias[c]) if op.bias is not None else 0) + int(n) * 255 * 128)
                for c, (m, s, n) in enumerate(zip(op.mult, op.shift, op.sparse.counts)))
    return dict(sparse_conv_im2col=im2col, sparse_conv_ring=im2col and op.ring_pixels(inplace) > 0,
                sparse_conv_exact=exact)


def _fc_flags(op: Op) -> dict[str, bool]:
    # tx_fc_s8: tx_fc_blocks4 runs the full 4-row blocks of a layer on the fast path (the rest is C)
    full, exact, n = op.out_depth // 4 * 4, op.needs_exact(), op.in_depth
    rows = op.shift[:full] if len(op.shift) > 1 else op.shift[:1] * (full > 0)
    blocks = not exact and full > 0
    return dict(fc_left=blocks and any(s >= 0 for s in rows), fc_g4=blocks and n % 8 >= 4,
                fc_tail=blocks and n % 4 != 0, fc_rest=exact or op.out_depth % 4 != 0, fc_exact=exact)


def kernel_features(graphs: dict[str, Graph], plans: dict[str, Plan]) -> KernelFeatures:
    """The union over every op of the library."""
    flags = dict.fromkeys(KernelFeatures().as_dict(), False)
    for name, g in graphs.items():
        for op, inplace in expand_ops(g.ops, plans[name].inplace):    # a fused chain's members too
            if op.kernel == "tx_conv":
                f = _conv_flags(op, inplace)
            elif op.kernel == "tx_dwconv":
                f = _dw_flags(op, inplace)
            elif op.kernel == "tx_pool":
                f = _pool_flags(op)
            elif op.kernel == "tx_sparse_conv":
                f = _sparse_conv_flags(op, inplace)
            elif op.kernel == "tx_fc":
                f = _fc_flags(op)
            elif op.kernel == "tx_chain":
                f = dict(chain_pool16=op.pool_sums() == 2, chain_pool32=op.pool_sums() == 4)
            else:
                continue
            for key, v in f.items():
                flags[key] |= v
    if flags["dw_rows"] and flags["dw_groups9"]:
        # Beside the row path's assembly, the few other 3x3 layers (e.g. stride-2 exit heads) take the C
        # group loop: the tap-list assembly would add ~1 KB of code to the library for them.
        flags["dw_groups9"], flags["dw_groups"] = False, True
    return KernelFeatures(**flags)
