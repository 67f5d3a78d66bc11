"""PAD (ZeroPadding2D: pads with the zero point) against TFLM."""

from tests.ops._harness import Case, matches_tflm, sweep_fixture


def zpad(shape, padding, conv_after=False):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        y = keras.layers.ZeroPadding2D(padding)(x)
        if conv_after:
            y = keras.layers.Conv2D(4, 3, strides=2)(y)
        return keras.Model(x, y)
    return build


CASES = [
    Case("p_sym", zpad((5, 4, 3), 1), (5, 4, 3)),
    Case("p_asym", zpad((4, 6, 2), ((1, 2), (0, 3))), (4, 6, 2)),
    Case("p_then_conv", zpad((7, 7, 3), ((0, 1), (0, 1)), conv_after=True), (7, 7, 3)),
]


sweep = sweep_fixture(CASES)
test_pad_matches_tflm = matches_tflm(CASES, "PAD")
