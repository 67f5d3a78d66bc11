"""The int8 pieces run on tflite_micro's interpreter, chained as the firmware chains them (the bit-exact
oracle of the generated C).

    TflmModel(tfl).run(q)                -> int8 outputs, one inference at a time
    Int8Pipeline(segments, heads, after_segment).run(x) -> int8 output of every exit (the firmware's view);
                                            a run's pipeline: `tinyexit.run.Run(path).oracle()`
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyexit.quantize.cut import _subgraph, output_order, tensor_qparams, tensor_shape
from tinyexit.quantize.qparams import quantize_array


class TflmModel:
    """One .tflite on tflite_micro's interpreter (the bit-exact oracle of the generated C)."""

    def __init__(self, tfl: bytes, output_names: Sequence[str] = ()):
        from tflite_micro.python.tflite_micro import runtime

        self.tfl = tfl
        self._interp = runtime.Interpreter.from_bytes(tfl)
        _, sg = _subgraph(tfl)
        self.num_outputs = sg.OutputsLength()
        self.order = output_order(tfl, output_names)
        self.input_shape = tensor_shape(tfl, "input")

    def run(self, q: np.ndarray) -> list[np.ndarray]:
        """int8 inputs [N, ...] -> one int8 array [N, ...] per Keras output (Keras order)."""
        q = np.asarray(q, dtype=np.int8)
        outs = [[] for _ in range(self.num_outputs)]
        shape = tuple(self.input_shape)
        for i in range(len(q)):
            self._interp.set_input(q[i].reshape(shape), 0)
            self._interp.invoke()
            for k, pos in enumerate(self.order):
                outs[k].append(np.array(self._interp.get_output(pos), dtype=np.int8).reshape(-1))
        return [np.stack(o) if o else np.zeros((0,), np.int8) for o in outs]


class Int8Pipeline:
    """The int8 segments and heads chained as the firmware chains them."""

    def __init__(self, segments: Sequence[bytes], heads: Sequence[bytes], after_segment: Sequence[int]):
        self.segments = [TflmModel(b) for b in segments]
        self.heads = [TflmModel(b) for b in heads]
        self.after_segment = list(after_segment)
        self.input_qparams = tensor_qparams(segments[0], "input")
        self.exit_qparams = [tensor_qparams(b, "output") for b in heads] + [tensor_qparams(segments[-1], "output")]

    def run_q(self, q: np.ndarray) -> list[np.ndarray]:
        """int8 model inputs -> int8 output of every exit (early exits in order, final last)."""
        acts = [np.asarray(q, np.int8)]
        for seg in self.segments:
            acts.append(seg.run(acts[-1])[0].reshape((len(q),) + tuple(seg_out_shape(seg))))
        outs = [head.run(acts[k + 1])[0] for head, k in zip(self.heads, self.after_segment)]
        return outs + [acts[-1].reshape(len(q), -1)]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """float model inputs (quantized as the firmware's front end does) -> int8 exit outputs."""
        return self.run_q(quantize_array(x, self.input_qparams))


def seg_out_shape(m: TflmModel) -> list[int]:
    return tensor_shape(m.tfl, "output")[1:]
