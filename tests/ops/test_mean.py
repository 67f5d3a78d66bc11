"""MEAN over the spatial axes (GlobalAveragePooling2D) against TFLM."""
import pytest

from tests.ops._harness import Case, build_sweep, check, copy_quantization, op_names


def same_quant(model: bytes) -> bytes:
    """Give MEAN's output the input's quantization (a case the converter does not produce by itself)."""
    import tflite

    sg = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    op = sg.Operators(sg.OperatorsLength() - 1)
    return copy_quantization(model, int(op.Inputs(0)), int(op.Outputs(0)))


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
    Case("m_same_quant", gap((4, 5, 6), False, conv_first=True), (4, 5, 6), patch=same_quant),
]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_mean_matches_tflm(sweep, name):
    assert op_names(sweep, name)[-1] == "MEAN"
    check(sweep, name, n_random=60)


def test_same_quantization_case_is_really_same(sweep):
    from tinyexit.codegen import read_model

    g = read_model(sweep["paths"]["m_same_quant"])
    x, y = g.tensors[g.ops[-1].inputs[0]], g.output
    assert (x.scale, x.zero_point) == (y.scale, y.zero_point)
