"""AVERAGE_POOL_2D: padding taps are excluded from the count; rounding half away from zero."""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.codegen.ir import register
from tinyexit.codegen.ops._pool import Pool2D


@register
@dataclass(frozen=True, eq=False)
class AveragePool2D(Pool2D):
    name = "AVERAGE_POOL_2D"
    kernel = "tx_pool"
    c_func = "tx_avgpool_s8"
