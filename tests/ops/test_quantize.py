"""QUANTIZE int8 -> int8 (requantization) against TFLM. The converter emits it where two learned ranges
meet, as in a quantization-aware-trained model: here fake-quant nodes with fixed ranges around an average
pool (which must keep its input's scale) force one. Converted from a tf.function (a Keras Lambda around
the fake quant makes the converter add a DEQUANTIZE/QUANTIZE pair of its own)."""
import numpy as np
import pytest

from tests.ops._harness import Case, _quiet, build_sweep, check, op_names, output_tensor, set_quantization


def requant(shape, before, after, conv_after=False, output_qparams=None):
    """A .tflite maker: fake_quant(before) -> 2x2 average pool -> fake_quant(after) [-> 1x1 conv].
    output_qparams (scale, zero point) overwrites the output's (the converter only requantizes to a
    narrower range by itself; a wider one becomes a DEQUANTIZE/QUANTIZE pair)."""
    def convert() -> bytes:
        import tensorflow as tf
        rng = np.random.default_rng(0)
        w = tf.constant(rng.normal(0, 0.5, size=(1, 1, shape[-1], 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, *shape], tf.float32)])
        def f(x):
            y = tf.quantization.fake_quant_with_min_max_args(x, *before)
            y = tf.nn.avg_pool2d(y, 2, 2, "VALID")
            y = tf.quantization.fake_quant_with_min_max_args(y, *after)
            if conv_after:
                y = tf.nn.conv2d(y, w, 1, "VALID")
            return y

        conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.normal(0, 1.5, size=(1, *shape)).astype(np.float32)]
                                               for _ in range(16))
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with _quiet():
            tfl = bytes(conv.convert())
        return tfl if output_qparams is None else set_quantization(tfl, output_tensor(tfl), *output_qparams)
    return convert


SPECS = {
    "q_narrower": requant((8, 8, 4), (-4.0, 4.0), (-1.0, 1.5)),      # multiplier > 1 (left shift), clamps
    "q_wider": requant((6, 4, 3), (-4.0, 4.0), (-1.0, 1.5), output_qparams=(0.09, 17)),  # multiplier < 1
    "q_then_conv": requant((4, 4, 8), (-4.0, 4.0), (-1.0, 2.0), conv_after=True),
}
CASES = [Case(name, None, ()) for name in SPECS]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    for name, make in SPECS.items():          # build_sweep takes the files that exist as they are
        path = ops_workdir / f"{name}.tflite"
        if not path.exists():
            path.write_bytes(make())
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", list(SPECS))
def test_requantize_matches_tflm(sweep, name):
    assert "QUANTIZE" in op_names(sweep, name)
    check(sweep, name)
