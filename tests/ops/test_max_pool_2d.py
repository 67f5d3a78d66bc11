"""MAX_POOL_2D against TFLM (window clipped to the image, strides)."""
import pytest

from tests.ops._harness import Case, build_sweep, check, op_names


def pool(kind, shape, k, s, pad):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        layer = keras.layers.AveragePooling2D if kind == "avg" else keras.layers.MaxPooling2D
        return keras.Model(x, layer(k, strides=s, padding=pad)(x))
    return build


KIND = "max"
CASES = []
for kind in (KIND,):
    CASES += [
        Case(f"{kind}_k2s2_valid", pool(kind, (8, 8, 3), 2, 2, "valid"), (8, 8, 3)),
        Case(f"{kind}_k3s1_same", pool(kind, (7, 6, 4), 3, 1, "same"), (7, 6, 4)),
        Case(f"{kind}_k3s2_same_odd", pool(kind, (9, 7, 2), 3, 2, "same"), (9, 7, 2)),
        Case(f"{kind}_global", pool(kind, (5, 5, 6), 5, 1, "valid"), (5, 5, 6)),
        Case(f"{kind}_k2x3", pool(kind, (6, 9, 2), (2, 3), (2, 3), "valid"), (6, 9, 2)),
        Case(f"{kind}_k5_on_3x3_same", pool(kind, (3, 3, 4), 5, 1, "same"), (3, 3, 4)),
        Case(f"{kind}_k2s1_same_even", pool(kind, (4, 5, 3), 2, 1, "same"), (4, 5, 3)),
    ]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_max_pool_matches_tflm(sweep, name):
    assert op_names(sweep, name) == ["MAX_POOL_2D"]
    check(sweep, name)
