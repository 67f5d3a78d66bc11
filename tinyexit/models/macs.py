"""Multiply-accumulate counts per layer and per exit path of a Keras model.

Convention (as TFLM profiling and MLPerf Tiny count them): output elements x kernel volume, padding taps
included; conv: Ho*Wo*Co*Kh*Kw*Ci/groups, depthwise: Ho*Wo*C*mult*Kh*Kw, dense: in*out. Pooling, batch norm,
activations and softmax count zero.
"""
from __future__ import annotations

import math

import keras


def layer_macs(layer) -> int:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        _, ho, wo, co = layer.output.shape
        kh, kw = layer.kernel_size
        return int(ho * wo * co * kh * kw)
    if isinstance(layer, keras.layers.Conv2D):
        _, ho, wo, co = layer.output.shape
        kh, kw = layer.kernel_size
        ci = layer.input.shape[-1]
        return int(ho * wo * co * kh * kw * ci // layer.groups)
    if isinstance(layer, keras.layers.Dense):
        return int(math.prod(layer.input.shape[1:]) * layer.units)   # the kernel is applied at every leading position
    return 0


def macs_per_layer(model: keras.Model) -> dict[str, int]:
    return {lay.name: layer_macs(lay) for lay in model.layers if layer_macs(lay)}


def ancestors(output) -> set[str]:
    """Names of the layers an output depends on (walks the functional graph back from the output)."""
    seen: set[str] = set()
    stack = [output._keras_history.operation]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        for node in op._inbound_nodes:
            for t in node.input_tensors:
                stack.append(t._keras_history.operation)
    return seen


def macs_per_exit(model: keras.Model) -> dict[str, int]:
    """MACs needed to produce each output (exit), from the input, counting shared layers once."""
    per_layer = macs_per_layer(model)
    out = {}
    for t in model.outputs:
        names = ancestors(t)
        out[t._keras_history.operation.name] = sum(m for n, m in per_layer.items() if n in names)
    return out
