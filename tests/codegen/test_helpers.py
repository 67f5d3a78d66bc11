"""Generation-time helpers: requantization constants, C literals, and the arena plan's invariants."""
from fractions import Fraction

import numpy as np
import pytest

from tests.conftest import conformance_model
from tinyexit.codegen import fuse, plan_memory, read_model
from tinyexit.codegen.cformat import c_float, c_ident, c_int
from tinyexit.codegen.quant import activation_range, quantize_multiplier


def test_quantize_multiplier_against_exact_rationals():
    rng = np.random.default_rng(3)
    for real in list(10.0 ** rng.uniform(-9, 3, 500)) + [0.5, 1.0, 2.0 ** -31, 1 - 2 ** -40]:
        m, shift = quantize_multiplier(real)
        exact = Fraction(real) * 2 ** (31 - shift)            # the mantissa the pair should encode
        assert 2 ** 30 <= m < 2 ** 31
        assert abs(Fraction(m) - exact) <= Fraction(1, 2)     # rounded to nearest
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0 ** -40) == (0, 0)          # below 2^-31: TFLM flushes to zero


def test_activation_ranges():
    assert activation_range("NONE", 0.1, 3) == (-128, 127)
    assert activation_range("RELU", 0.1, 3) == (3, 127)
    assert activation_range("RELU6", 0.1, -128) == (-128, -68)     # 6 / 0.1 = 60 steps above zero
    assert activation_range("RELU6", 0.01, 0) == (0, 127)


def test_c_literals():
    for v in (0.1, 1 / 3, 3.4e38, 1e-45, -2.5):
        s = c_float(v)
        assert s.endswith("f") and np.float32(float(s[:-1])) == np.float32(v)
    assert c_ident("exit-1.head") == "exit_1_head" and c_ident("0seg") == "m_0seg"
    assert c_int(-(2 ** 31)) == "(-2147483647 - 1)"


@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"])
@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("kernels", ["reference", "cortex_m4"])
def test_plan_never_overlaps_live_tensors(model, inplace, kernels):
    """No two buffers live at one step share a byte: tensors, in-place rings and the kernels' work space
    (cortex_m4: planned in the arena, live only during its own step)."""
    g = fuse(read_model(conformance_model(model)))
    plan = plan_memory(g, inplace=inplace, kernels=kernels)
    n = len(g.ops)
    first = {t: 0 for t in g.inputs}
    last = {t: n - 1 for t in g.outputs}
    for op in g.ops:
        first[op.outputs[0]] = op.index
        for t in op.inputs:
            last[t] = max(last.get(t, 0), op.index)
    group = {t: t for t in first}   # tensors allowed to share bytes: alias or in-place input/output

    def root(t):
        while group[t] != t:
            t = group[t]
        return t
    for op in g.ops:
        if op.is_alias():
            group[root(op.outputs[0])] = root(op.inputs[0])
        elif op.index in plan.inplace:
            group[root(op.outputs[0])] = root(plan.inplace[op.index])
    ts = sorted(first)
    for i, a in enumerate(ts):
        for b in ts[i + 1:]:
            if root(a) == root(b):
                continue
            if first[a] <= last.get(b, first[b]) and first[b] <= last.get(a, first[a]):
                ra = (plan.offsets[a], plan.offsets[a] + g.tensors[a].nbytes)
                rb = (plan.offsets[b], plan.offsets[b] + g.tensors[b].nbytes)
                assert ra[1] <= rb[0] or rb[1] <= ra[0], (a, b, ra, rb)
    for op_index, (off, size) in plan.scratch.items():
        assert off + size <= plan.arena_bytes
        for t in ts:
            if first[t] <= op_index <= last.get(t, first[t]):
                assert off + size <= plan.offsets[t] or plan.offsets[t] + g.tensors[t].nbytes <= off
    # The work space: every op whose kernel needs one has it inside its scratch buffer, where the op says
    # (Op.work_offset: after the ring, or over it for a kernel that never reads the ring, e.g. the cortex_m4 1x1
    # conv), and it is in no live range (dead between the step's calls) but that ring: the ring stays live in the
    # plan because the same library built without the DSP extension runs the reference kernel, which reads it.
    assert {op.index: op.work_bytes(kernels) for op in g.ops if op.work_bytes(kernels)} == \
        {i: size for i, (_, size) in plan.work.items()}
    for i, (off, size) in plan.work.items():
        s_off, s_size = plan.scratch[i]
        op = g.ops[i]
        assert off == s_off + op.work_offset(i in plan.inplace, kernels) and off + size <= s_off + s_size
        assert off % 4 == 0
        ring = op.scratch_bytes(i in plan.inplace)
        over = (s_off, s_off + ring) if op.work_offset(i in plan.inplace, kernels) < ring else (off, off)
        for lo, n in plan.live[i]:
            for a, b in ((lo, min(lo + n, over[0])), (max(lo, over[1]), lo + n)):   # the live bytes outside it
                assert b <= a or b <= off or off + size <= a, (i, (off, size), (lo, n))
    if kernels == "cortex_m4":
        assert plan.work and plan.work_bytes == max(op.work_bytes(kernels) for op in g.ops)
    else:
        assert not plan.work
    if not inplace:
        assert not plan.inplace and set(plan.scratch) == set(plan.work)
