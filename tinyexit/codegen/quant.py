"""Requantization constants computed exactly as TFLM computes them at Prepare time.

Everything here runs once in Python at generation time; the C kernels only see the resulting integers.
The float/double mix matters for bit-exactness: each function says which precision TFLM uses where.
"""
from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def _round_half_away(x: float) -> float:
    """std::round / TfLiteRound: halves go away from zero (Python's round() goes to even)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


class MultiplierRangeError(ValueError):
    """A requantization multiplier TFLM's arithmetic leaves undefined; the reader names the op it belongs to."""


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplier (double rounding build): real ~= mult * 2^(shift - 31), mult in [2^30, 2^31).
    A multiplier of 2^31 or more (shift > 31) is refused: MultiplyByQuantizedMultiplier then shifts an int32
    left by 32 or more, undefined in C and C++, so no output could be called TFLM's (a corrupt scale)."""
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real) or abs(real) >= 2.0 ** 31:
        raise MultiplierRangeError(f"requantization multiplier {real:.3g} >= 2^31 (a corrupt scale; "
                                   f"TFLM's arithmetic is undefined there)")
    q, shift = math.frexp(real)
    q_fixed = int(_round_half_away(q * (1 << 31)))  # exact: q has 53 bits, q * 2^31 keeps them
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def scale_product_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """QuantizeMultiplier(double(input_scale) * double(filter_scale) / double(output_scale)): the float32
    scales widened to double before the product (exact in double) and the division."""
    f32 = lambda s: float(np.float32(s))  # noqa: E731  (the tensor's float32 scale, as TFLM reads it)
    return quantize_multiplier(f32(input_scale) * f32(filter_scale) / f32(output_scale))


def conv_multipliers(input_scale: float, filter_scales, output_scale: float, channels: int):
    """Per-channel (or broadcast per-tensor) multipliers of CONV_2D/DEPTHWISE_CONV_2D and per-channel
    FULLY_CONNECTED: the scale product is taken in double (PopulateConvolutionQuantizationParams,
    CalculateOpDataFullyConnected)."""
    scales = np.asarray(filter_scales, np.float32).ravel()
    pairs = [scale_product_multiplier(input_scale, scales[c] if len(scales) > 1 else scales[0], output_scale)
             for c in range(channels)]
    return [m for m, _ in pairs], [sh for _, sh in pairs]


def fc_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """Per-tensor FULLY_CONNECTED (GetQuantizedConvolutionMultipler). The pinned tflite_micro takes the
    input x filter scale product in double, like conv: a float32 product differs from it by up to half a
    float32 ulp (tens of multiplier units) and changed 1 output in ~2,000 of a wide FC layer (measured)."""
    return scale_product_multiplier(input_scale, filter_scale, output_scale)


def quantize_value(f: float, scale: float, zero_point: int) -> int:
    """TFLM's Quantize helper: TfLiteRound(f / scale) in float, plus the zero point."""
    tmp = np.float32(f) / np.float32(scale)
    return int(zero_point) + int(_round_half_away(float(tmp)))


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8."""
    lo, hi = INT8_MIN, INT8_MAX
    if activation == "RELU":
        lo = max(lo, quantize_value(0.0, scale, zero_point))
    elif activation == "RELU6":
        lo = max(lo, quantize_value(0.0, scale, zero_point))
        hi = min(hi, quantize_value(6.0, scale, zero_point))
    elif activation == "RELU_N1_TO_1":
        lo = max(lo, quantize_value(-1.0, scale, zero_point))
        hi = min(hi, quantize_value(1.0, scale, zero_point))
    return lo, hi


def softmax_params(input_scale: float, beta: float) -> tuple[int, int, int]:
    """int8 SOFTMAX: PreprocessSoftmaxScaling + CalculateInputRadius with 5 integer bits for the scaled diff.
    Returns (input_multiplier, input_left_shift, diff_min)."""
    integer_bits = 5
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * (1 << (31 - integer_bits)),
               (1 << 31) - 1.0)
    mult, left_shift = quantize_multiplier(real)  # QuantizeMultiplierGreaterThanOne: same decomposition
    max_input_rescaled = (1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits))
                          / (1 << left_shift))
    diff_min = -int(math.floor(max_input_rescaled))
    return mult, left_shift, diff_min


def add_params(scale1: float, scale2: float, out_scale: float):
    """int8 ADD (left_shift 20): multipliers of both inputs and of the output, all 'smaller than one'."""
    left_shift = 20
    s1, s2, so = (float(np.float32(s)) for s in (scale1, scale2, out_scale))
    twice_max = 2.0 * max(s1, s2)
    m1 = quantize_multiplier(s1 / twice_max)
    m2 = quantize_multiplier(s2 / twice_max)
    mo = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    return left_shift, m1, m2, mo
