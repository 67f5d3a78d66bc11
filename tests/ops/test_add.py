"""ADD of two activations with different scales, with and without a fused RELU, against TFLM."""
import pytest

from tests.ops._harness import Case, build_sweep, check, op_names


def add(shape, relu=False, scale2=3.0):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        a = keras.layers.Conv2D(shape[-1], 1)(x)
        b = keras.layers.Conv2D(shape[-1], 3, padding="same")(x)
        b = keras.layers.Rescaling(scale2)(b)
        y = keras.layers.Add()([a, b])
        if relu:
            y = keras.layers.ReLU()(y)
        return keras.Model(x, y)
    return build


def residual(shape):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        a = keras.layers.Conv2D(shape[-1], 3, padding="same", activation="relu")(x)
        b = keras.layers.Conv2D(shape[-1], 3, padding="same")(a)
        return keras.Model(x, keras.layers.ReLU()(keras.layers.Add()([a, b])))
    return build


CASES = [
    Case("a_plain", add((6, 6, 4)), (6, 6, 4)),
    Case("a_relu", add((5, 7, 3), relu=True, scale2=0.2), (5, 7, 3)),
    Case("a_residual", residual((6, 6, 8)), (6, 6, 8)),
]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_add_matches_tflm(sweep, name):
    assert "ADD" in op_names(sweep, name)
    check(sweep, name)
