"""Rank <= 4 shapes padded with leading ones, for the copy kernels (PAD, STRIDED_SLICE)."""
from __future__ import annotations


def pad4(shape, fill: int = 1) -> tuple[int, int, int, int]:
    s = [int(d) for d in shape]
    return tuple([fill] * (4 - len(s)) + s)  # type: ignore[return-value]
