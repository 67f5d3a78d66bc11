"""The wide conv stream (tinyexit.codegen.ops.conv_2d.Conv2D.wide_stream) on the host, without the emulator:
the arithmetic tx_conv_wpasses does on it (x16 lanes of SXTB16 / SXTB16 ROR 8, SMLAD per step, SMMLAR with
half + (acc >> 31), >> right, SSAT), written out here in Python, equals TFLM's integer conv (bias + sum
(x + input_offset) * w, MultiplyByQuantizedMultiplier, + zp, clamp) written out independently; and the
generator refuses the layers that arithmetic would get wrong. The emulated runs are tests/kernels_m4."""
from dataclasses import replace

import numpy as np

from tinyexit.codegen.ops.conv_2d import Conv2D

from ._arith import lanes, m4_rescale, s32, tflm_rescale


def _op(rng, k, oc, shift_lo=-12, shift_hi=-1, bias_mag=5000, act=(-128, 127)):
    w = rng.integers(-128, 128, size=(oc, 1, 1, k)).astype(np.int8)
    return Conv2D(index=0, inputs=(0,), outputs=(1,), in_hwc=(2, 2, k), out_hwc=(2, 2, oc),
                  input_offset=int(rng.integers(-127, 129)), output_offset=int(rng.integers(-128, 128)),
                  act=act, weights=w, bias=rng.integers(-bias_mag, bias_mag, size=oc).astype(np.int32),
                  mult=tuple(int(v) for v in rng.integers(1 << 30, 1 << 31, size=oc)),
                  shift=tuple(int(v) for v in rng.integers(shift_lo, shift_hi + 1, size=oc)))


def _tflm(op, x):
    """TFLM's reference: MultiplyByQuantizedMultiplier(acc, mult, shift) + zp, clamped."""
    oc, k = op.out_hwc[2], op.taps()
    w = op.weights.reshape(oc, k).astype(np.int64)
    out = np.zeros((len(x), oc), np.int64)
    for p in range(len(x)):
        for c in range(oc):
            acc = int(op.bias[c]) + int(((x[p].astype(np.int64) + op.input_offset) * w[c]).sum())
            y = tflm_rescale(acc, op.mult[c], op.shift[c]) + op.output_offset
            out[p, c] = min(max(y, op.act[0]), op.act[1])
    return out


def _kernel(op, x):
    """tx_conv_wide's arithmetic over the stream: 4 pixels (x [4, k] int8), every channel pair."""
    oc, k = op.out_hwc[2], op.taps()
    kp = (k + 3) // 4 * 4
    xs = np.zeros((4, kp), np.int64)
    xs[:, :k] = x
    steps = []          # per step: the 4 pixels' (lane lo, lane hi)
    for j in range(0, kp, 4):
        steps.append([(xs[p, j], xs[p, j + 2]) for p in range(4)])
        steps.append([(xs[p, j + 1], xs[p, j + 3]) for p in range(4)])
    s = [int(v) for v in op.wide_stream()]
    per_pair = 2 + kp + 6
    assert len(s) == oc // 2 * per_pair
    out = np.zeros((4, oc), np.int64)
    for pair in range(oc // 2):
        t = s[pair * per_pair:(pair + 1) * per_pair]
        acc = [[t[0]] * 4, [t[1]] * 4]
        for i, st in enumerate(steps):
            for ch in range(2):
                wl, wh = lanes(t[2 + 2 * i + ch])
                for p in range(4):
                    acc[ch][p] = s32(acc[ch][p] + st[p][0] * wl + st[p][1] * wh)
        for ch in range(2):
            mult, half, right = t[2 + kp + 3 * ch: 5 + kp + 3 * ch]
            for p in range(4):
                y = m4_rescale(acc[ch][p], mult, half, right)                    # SMMLAR, ASR
                out[p, 2 * pair + ch] = min(max(y, -128), 127)                     # SSAT #8
    return out


def test_stream_arithmetic_equals_tflm():
    rng = np.random.default_rng(3)
    for k, oc in ((64, 64), (5, 4), (27, 16), (40, 10), (12, 2)):
        op = _op(rng, k, oc)
        assert op.wide_ok()
        x = rng.integers(-128, 128, size=(4, k)).astype(np.int8)
        x[0] = -128                     # extremes of the input
        x[1] = 127
        np.testing.assert_array_equal(_kernel(op, x), _tflm(op, x), err_msg=f"k={k} oc={oc}")


def test_generator_refuses_what_the_stream_cannot_do():
    rng = np.random.default_rng(4)
    assert _op(rng, 16, 8).wide_ok()
    assert not _op(rng, 16, 7).wide_ok()                               # odd channel count
    assert not _op(rng, 16, 8, shift_lo=0, shift_hi=0).wide_ok()       # right shift 0: no sign term
    assert not _op(rng, 16, 8, shift_lo=-23, shift_hi=-23).wide_ok()   # zp << right could overflow
    assert not _op(rng, 16, 8, act=(-128, 100)).wide_ok()              # a clamp narrower than int8
    op = _op(rng, 16, 8)
    near = (1 << 30) - 16 * 255 * 128                                   # |bias| + k * 255 * 128 < 2^30 (left 0)
    assert replace(op, bias=np.full(8, near - 1, np.int32)).wide_ok()
    assert not replace(op, bias=np.full(8, -near, np.int32)).wide_ok()  # |acc| bound: tx_mbqm needed
