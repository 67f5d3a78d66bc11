"""PAD (ZeroPadding2D: pads with the zero point) against TFLM."""
import pytest

from tests.ops._harness import Case, build_sweep, check, op_names


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


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_pad_matches_tflm(sweep, name):
    assert "PAD" in op_names(sweep, name)
    check(sweep, name)
