"""SOFTMAX int8 (TFLM's fixed-point exp/reciprocal path) against TFLM, 2-D and 4-D inputs."""
import pytest

from tests.ops._harness import Case, build_sweep, check, op_names


def dense_softmax(n_in, n_out, scale):
    def build(keras):
        x = keras.Input((n_in,), batch_size=1)
        y = keras.layers.Dense(n_out)(x)
        y = keras.layers.Rescaling(scale)(y)
        return keras.Model(x, keras.layers.Softmax()(y))
    return build


def conv_softmax(shape, ch):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        y = keras.layers.Conv2D(ch, 1)(x)
        return keras.Model(x, keras.layers.Softmax(axis=-1)(y))
    return build


CASES = [
    Case("s_12", dense_softmax(16, 12, 1.0), (16,)),
    Case("s_10_sharp", dense_softmax(8, 10, 8.0), (8,)),
    Case("s_2_flat", dense_softmax(5, 2, 0.05), (5,)),
    Case("s_40_wide", dense_softmax(10, 40, 3.0), (10,)),
    Case("s_4d_rows", conv_softmax((3, 3, 4), 5), (3, 3, 4)),
]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_softmax_matches_tflm(sweep, name):
    assert op_names(sweep, name)[-1] == "SOFTMAX"
    check(sweep, name, n_random=60)
