"""The depthwise row path's table (tinyexit.codegen.ops.depthwise_conv_2d.DepthwiseConv2D.rows_table) on the
host, without the emulator: the arithmetic tx_dw_rows9 (and the C tail) does on it (SXTB16 / SXTB16 ROR 8 lanes
of an input word times the weight lanes, SMMLAR with half + (acc >> 31), >> right, SSAT, clamp), written out
here in Python, equals TFLM's integer depthwise conv (bias + sum (x + input_offset) * w, MultiplyByQuantized-
Multiplier, + zp, clamp) written out independently; and the generator refuses the layers that arithmetic would
get wrong (rows_ok). The emulated runs are tests/kernels_m4/test_kernels_m4.py (m4r_ cases)."""
from dataclasses import replace

import numpy as np

from tinyexit.codegen.ops.depthwise_conv_2d import DepthwiseConv2D

from ._arith import lanes, m4_rescale, s32, tflm_rescale


def _op(rng, c, shift_lo=-12, shift_hi=-1, bias_mag=5000, act=(-128, 127)):
    return DepthwiseConv2D(index=0, inputs=(0,), outputs=(1,), in_hwc=(3, 3, c), out_hwc=(3, 3, c),
                           kernel_hw=(3, 3), stride_hw=(1, 1), pad_tl=(1, 1),
                           input_offset=int(rng.integers(-127, 129)), output_offset=int(rng.integers(-128, 128)),
                           act=act, weights=rng.integers(-128, 128, size=(3, 3, c)).astype(np.int8),
                           bias=rng.integers(-bias_mag, bias_mag, size=c).astype(np.int32),
                           mult=tuple(int(v) for v in rng.integers(1 << 30, 1 << 31, size=c)),
                           shift=tuple(int(v) for v in rng.integers(shift_lo, shift_hi + 1, size=c)))


def _tflm(op, x):
    """TFLM's reference for one output pixel: x [9, c] int8 (the window, row-major taps)."""
    c = op.out_hwc[2]
    w = np.asarray(op.weights, np.int64).reshape(9, c)
    out = np.zeros(c, np.int64)
    for ch in range(c):
        acc = int(op.bias[ch]) + int(((x[:, ch].astype(np.int64) + op.input_offset) * w[:, ch]).sum())
        y = tflm_rescale(acc, op.mult[ch], op.shift[ch]) + op.output_offset
        out[ch] = min(max(y, op.act[0]), op.act[1])
    return out


def _requant(acc, mult, half, right, act):
    y = m4_rescale(acc, mult, half, right)                                           # SMMLAR, ASR
    return min(max(min(max(y, -128), 127), act[0]), act[1])                          # SSAT #8, clamp


def _kernel(op, x):
    """The row path's arithmetic over rows_table for one output pixel (x [9, c] int8)."""
    c = op.out_hwc[2]
    t = [int(v) for v in op.rows_table()]
    g = c // 4
    assert len(t) == 34 * g + 13 * (c % 4)
    out = np.zeros(c, np.int64)
    for k in range(g):
        e = t[34 * k:34 * (k + 1)]
        acc = list(e[:4])
        for tap in range(9):
            x02, x13 = (x[tap, 4 * k], x[tap, 4 * k + 2]), (x[tap, 4 * k + 1], x[tap, 4 * k + 3])
            (w0, w2), (w1, w3) = lanes(e[4 + 2 * tap]), lanes(e[5 + 2 * tap])
            acc = [s32(acc[0] + int(x02[0]) * w0), s32(acc[1] + int(x13[0]) * w1),
                   s32(acc[2] + int(x02[1]) * w2), s32(acc[3] + int(x13[1]) * w3)]
        for ch in range(4):
            out[4 * k + ch] = _requant(acc[ch], *e[22 + 3 * ch:25 + 3 * ch], op.act)
    for i in range(c % 4):                                                            # tx_dw_rows_tail
        e = t[34 * g + 13 * i:34 * g + 13 * (i + 1)]
        acc = e[0]
        for tap in range(9):
            acc = s32(acc + int(x[tap, 4 * g + i]) * e[1 + tap])
        out[4 * g + i] = _requant(acc, e[10], e[11], e[12], op.act)
    return out


def test_rows_table_arithmetic_equals_tflm():
    rng = np.random.default_rng(17)
    for trial in range(40):
        c = int(rng.choice([1, 3, 4, 6, 8, 13]))
        op = _op(rng, c, act=(-128, 127) if trial % 3 else (-60, 90))
        assert op.rows_ok()
        for _ in range(6):
            x = rng.integers(-128, 128, size=(9, c))
            # padding taps read the zero point (x + input_offset == 0), as the kernel's zero-point columns
            x[rng.random(9) < 0.3] = -op.input_offset if -128 <= -op.input_offset <= 127 else 0
            np.testing.assert_array_equal(_kernel(op, x), _tflm(op, x))


def test_rows_ok_refuses_what_the_arithmetic_gets_wrong():
    rng = np.random.default_rng(3)
    op = _op(rng, 8)
    assert op.rows_ok()
    assert not replace(op, stride_hw=(2, 2)).rows_ok()
    assert not replace(op, kernel_hw=(5, 5), weights=np.zeros((5, 5, 8), np.int8)).rows_ok()
    assert not replace(op, depth_multiplier=2).rows_ok()
    assert not replace(op, shift=(0,) + op.shift[1:]).rows_ok()                    # right 0: neg is 0 there
    assert not replace(op, shift=(-23,) + op.shift[1:]).rows_ok()                  # zp << right overflows
    assert not replace(op, bias=np.full(8, (1 << 30) - 1000, np.int32)).rows_ok()  # |acc| bound
    assert replace(op, shift=(-1,) * 8).rows_ok()
