"""Keras graph surgery and TFLite int8 conversion.

    split_model(model, points)           -> (segments, heads)         Keras models, generic over the graph
    boundary_activations(model, points, x)                            float activations at the exit points
    convert_int8(model, representative)  -> bytes                     one full-integer int8 .tflite
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from typing import Sequence

import numpy as np

from tinyexit.errors import TinyexitError


def _is_keras_tensor(obj) -> bool:
    return hasattr(obj, "_keras_history") and obj.__class__.__name__ == "KerasTensor"


def _rebuild(boundary, new_input, target, piece: str):
    """Re-apply the layers between `boundary` (a KerasTensor of the original graph) and `target` to
    `new_input`; returns the new output tensor. Any path to `target` that does not pass through
    `boundary` is an error: the exit point would not cut the graph."""
    from keras import tree

    memo = {id(boundary): new_input}

    def visit(t):
        key = id(t)
        if key in memo:
            return memo[key]
        op, node_index, tensor_index = t._keras_history
        node = op._inbound_nodes[node_index]
        if node.is_input:
            raise TinyexitError(
                f"cannot cut {piece}: it needs the model input '{t.name}' besides its own input, so the "
                f"exit point does not separate the graph (a skip connection crosses it). Choose an exit "
                f"point that every path from the input passes through.")
        args = tree.map_structure(lambda a: visit(a) if _is_keras_tensor(a) else a, node.arguments.args)
        kwargs = tree.map_structure(lambda a: visit(a) if _is_keras_tensor(a) else a, node.arguments.kwargs)
        outs = tree.flatten(op(*args, **kwargs))
        for i, orig in enumerate(tree.flatten(node.outputs)):
            memo[id(orig)] = outs[i]
        return memo[key]

    return visit(target)


def split_model(model, points: Sequence[str]):
    """Cut a functional Keras model with outputs [exit_1, ..., exit_K, final] at the layers named in
    `points` (one per early exit, in order). Returns (segments, heads): K+1 segment models
    (input -> point 1, point 1 -> point 2, ..., point K -> final output) and K head models
    (point k -> exit k output). The pieces share the original layers (and weights)."""
    import keras

    outputs = list(model.outputs)
    if len(outputs) != len(points) + 1:
        raise TinyexitError(
            f"the model has {len(outputs)} outputs but model.json lists {len(points)} early exits; the "
            f"model must output one softmax per early exit plus the final one (final last). Retrain or fix "
            f"model.json.")
    boundaries = []
    for name in points:
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise TinyexitError(f"exit point layer '{name}' (model.json) is not in the model; fix model.json "
                                f"or retrain") from None
        boundaries.append(layer.output)
    if len(model.inputs) != 1:
        raise TinyexitError("tinyexit quantizes models with exactly one input")

    segments, heads = [], []
    starts = [model.inputs[0]] + boundaries
    ends = boundaries + [outputs[-1]]
    for k, (start, end) in enumerate(zip(starts, ends)):
        if k == 0:
            segments.append(keras.Model(model.inputs[0], end, name="seg0"))
            continue
        inp = keras.Input(shape=tuple(start.shape[1:]), dtype=start.dtype, name=f"seg{k}_input")
        segments.append(keras.Model(inp, _rebuild(start, inp, end, f"segment {k}"), name=f"seg{k}"))
    for k, start in enumerate(boundaries):
        inp = keras.Input(shape=tuple(start.shape[1:]), dtype=start.dtype, name=f"head{k}_input")
        heads.append(keras.Model(inp, _rebuild(start, inp, outputs[k], f"exit head {k}"), name=f"head{k}"))
    return segments, heads


def boundary_activations(model, points: Sequence[str], x: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
    """Float activations at each exit point, computed by the original model on `x`."""
    import keras

    if not points:
        return []
    probe = keras.Model(model.inputs, [model.get_layer(p).output for p in points])
    outs = probe.predict(x, batch_size=batch_size, verbose=0)
    return [outs] if len(points) == 1 else list(outs)


# ---------------------------------------------------------------------------------------------------------
# Conversion and flatbuffer helpers
# ---------------------------------------------------------------------------------------------------------

def convert_int8(model, representative: np.ndarray, *, per_channel: bool = True) -> bytes:
    """Full-integer int8 conversion: int8 input and output, builtin int8 kernels only. `per_channel=False`
    gives conv and dense weights one scale per tensor (the op tests reach the per-tensor kernel paths)."""
    import tensorflow as tf

    rep = np.asarray(representative, dtype=np.float32)

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel:
        conv._experimental_disable_per_channel = True
    try:
        with _quiet():
            return bytes(conv.convert())
    except Exception as e:  # the converter raises many types; give the user the op it choked on
        raise TinyexitError(f"int8 conversion of '{model.name}' failed: {e}. Use layers with int8 TFLite "
                            f"builtin kernels (conv, depthwise conv, dense, pooling, add, reshape, softmax).") from e


@contextlib.contextmanager
def _quiet():
    """Silence the converter's chatter (Python prints, warnings and C++ logs on fds 1 and 2); replay it on
    stderr if the conversion fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        ok = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
            ok = True
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if not ok:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace")[-4000:])
