"""CONCATENATION along channels and along a spatial axis, against TFLM."""
import pytest

from tests.ops._harness import Case, build_sweep, check, op_names


def cat(shape, axis, n=2):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        parts = [keras.layers.Conv2D(2 + i, 1 + 2 * (i % 2), padding="same")(x) for i in range(n)]
        if axis != -1:
            parts = [keras.layers.Conv2D(3, 1)(p) for p in parts]
        return keras.Model(x, keras.layers.Concatenate(axis=axis)(parts))
    return build


CASES = [
    Case("cat_channels", cat((5, 5, 3), -1), (5, 5, 3)),
    Case("cat_three", cat((4, 6, 2), -1, n=3), (4, 6, 2)),
    Case("cat_rows", cat((4, 5, 2), 1), (4, 5, 2)),
]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_concatenation_matches_tflm(sweep, name):
    assert "CONCATENATION" in op_names(sweep, name)
    check(sweep, name)
