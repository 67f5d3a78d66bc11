"""CONV_2D against TFLM: shapes, strides, SAME/VALID, activations, per-channel and per-tensor weights."""
import pytest

from tests.ops._harness import Case, build_sweep, check, op_names


def conv(shape, filters, k, s, pad, act=None, bias=True):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        y = keras.layers.Conv2D(filters, k, strides=s, padding=pad, activation=act, use_bias=bias)(x)
        return keras.Model(x, y)
    return build


CASES = [
    Case("c_k3s1_same", conv((8, 8, 3), 4, 3, 1, "same"), (8, 8, 3)),
    Case("c_k3s2_valid_relu", conv((9, 7, 2), 5, 3, 2, "valid", "relu"), (9, 7, 2)),
    Case("c_k5s2_same_relu6", conv((7, 7, 3), 6, 5, 2, "same", "relu6"), (7, 7, 3)),
    Case("c_k1_inplace", conv((6, 5, 8), 8, 1, 1, "same", "relu"), (6, 5, 8)),
    Case("c_k3_inplace_ring", conv((6, 6, 8), 8, 3, 1, "same"), (6, 6, 8)),
    Case("c_k3x2_s21", conv((9, 8, 3), 4, (3, 2), (2, 1), "same"), (9, 8, 3)),
    Case("c_k4_even_same", conv((8, 9, 2), 3, 4, 2, "same"), (8, 9, 2)),
    Case("c_nobias", conv((6, 6, 3), 4, 3, 1, "valid", bias=False), (6, 6, 3)),
    Case("c_kernel_bigger_than_input", conv((3, 4, 2), 3, 5, 1, "same"), (3, 4, 2)),
    Case("c_k1s2", conv((7, 6, 5), 4, 1, 2, "valid"), (7, 6, 5)),
    Case("c_full_window", conv((5, 4, 3), 6, (5, 4), 1, "valid"), (5, 4, 3)),
    Case("c_k3s3_same", conv((8, 7, 2), 3, 3, 3, "same"), (8, 7, 2)),
    Case("c_per_tensor", conv((8, 8, 3), 4, 3, 1, "same", "relu"), (8, 8, 3), per_channel=False),
    Case("c_per_tensor_inplace", conv((6, 6, 4), 4, 3, 1, "same"), (6, 6, 4), per_channel=False),
]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_conv_matches_tflm(sweep, name):
    assert op_names(sweep, name) == ["CONV_2D"]
    check(sweep, name)


def test_inplace_cases_really_run_in_place(sweep):
    for name in ("c_k1_inplace", "c_k3_inplace_ring", "c_per_tensor_inplace"):
        assert sweep["report"].models[name].inplace_ops == [0], name
