"""One module per supported op; importing this package fills the registry `tinyexit.codegen.ir.OPS`."""
from tinyexit.codegen.ops import (add, average_pool_2d, concatenation, conv_2d, depthwise_conv_2d,  # noqa: F401
                                  fully_connected, max_pool_2d, mean, pad, quantize, reshape, softmax,
                                  strided_slice)
from tinyexit.codegen.ir import OPS

__all__ = ["OPS"]
