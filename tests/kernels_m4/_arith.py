"""Integer arithmetic the host-side kernel checks write out (test_wide_stream.py, test_dw_rows_table.py): TFLM's
requantization as its reference kernels do it, and the Cortex-M4 instructions the assembly uses."""


def tflm_rescale(acc: int, mult: int, shift: int) -> int:
    """TFLM's MultiplyByQuantizedMultiplier(acc, mult, shift): SaturatingRoundingDoublingHighMul of acc << left,
    then RoundingDivideByPOT by right (the output offset and the clamp are the caller's)."""
    left, right = max(shift, 0), max(-shift, 0)
    ab = acc * (1 << left) * mult
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    hi = int((ab + nudge) / (1 << 31))               # truncation toward zero, as C's int64 division
    mask = (1 << right) - 1
    rem, thr = hi & mask, (mask >> 1) + (1 if hi < 0 else 0)
    return (hi >> right) + (1 if rem > thr else 0)


def s32(v: int) -> int:
    """v as a two's-complement 32-bit register."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def lanes(word: int) -> tuple[int, int]:
    """The two signed 16-bit lanes (low, high) of a word, as SMLAD reads them."""
    lo, hi = word & 0xFFFF, (word >> 16) & 0xFFFF
    return (lo - 65536 if lo >= 32768 else lo), (hi - 65536 if hi >= 32768 else hi)


def m4_rescale(acc: int, mult: int, half: int, right: int) -> int:
    """The kernels' requantization: SMMLAR(acc, mult, half + (acc >> 31)), then ASR by right (before SSAT)."""
    ra = s32(half + (-1 if acc < 0 else 0))
    return s32(((ra << 32) + acc * mult + (1 << 31)) >> 32) >> right
