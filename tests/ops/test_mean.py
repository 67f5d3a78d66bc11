"""MEAN over the spatial axes (GlobalAveragePooling2D) against TFLM."""
import pytest

from tests.ops._harness import Case, build_sweep, check, op_names


def gap(shape, keepdims, conv_first=False):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        y = keras.layers.Conv2D(shape[-1] + 2, 3, padding="same")(x) if conv_first else x
        return keras.Model(x, keras.layers.GlobalAveragePooling2D(keepdims=keepdims)(y))
    return build


CASES = [
    Case("m_flat", gap((5, 4, 6), False), (5, 4, 6)),
    Case("m_keepdims", gap((3, 7, 4), True), (3, 7, 4)),
    Case("m_after_conv", gap((6, 6, 3), False, conv_first=True), (6, 6, 3)),
]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_mean_matches_tflm(sweep, name):
    assert op_names(sweep, name)[-1] == "MEAN"
    check(sweep, name, n_random=60)
