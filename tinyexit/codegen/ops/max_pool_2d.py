"""MAX_POOL_2D over the window clipped to the image."""
from __future__ import annotations

from dataclasses import dataclass

from tinyexit.codegen.ir import register
from tinyexit.codegen.ops._pool import Pool2D


@register
@dataclass(frozen=True, eq=False)
class MaxPool2D(Pool2D):
    name = "MAX_POOL_2D"
    kernel = "tx_pool"
    c_func = "tx_maxpool_s8"
