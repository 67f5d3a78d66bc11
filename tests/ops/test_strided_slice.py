"""STRIDED_SLICE: the channel slice x[..., :k] of the exit heads (and a spatial box), against TFLM."""
import pytest

from tests.ops._harness import Case, build_sweep, check, op_names


def slice_model(shape, fn, conv_after=True):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        y = keras.layers.Conv2D(shape[-1], 1)(x)
        y = keras.layers.Lambda(fn)(y)
        if conv_after:
            y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(y)
        return keras.Model(x, y)
    return build


CASES = [
    Case("ss_channels", slice_model((5, 5, 8), lambda t: t[..., :4]), (5, 5, 8)),
    Case("ss_channels_mid", slice_model((4, 6, 6), lambda t: t[:, :, :, 2:5], conv_after=False), (4, 6, 6)),
    Case("ss_rows", slice_model((6, 5, 3), lambda t: t[:, 1:4, :, :], conv_after=False), (6, 5, 3)),
]


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    return build_sweep(CASES, ops_workdir, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_strided_slice_matches_tflm(sweep, name):
    # the slice runs alone, or fused into the depthwise conv that reads it when that plans the smaller arena
    # (cortex_m4, whose depthwise work space lives in the arena, picks the fusion for ss_channels)
    assert any(op in ("STRIDED_SLICE", "STRIDED_SLICE+DEPTHWISE_CONV_2D") for op in op_names(sweep, name))
    check(sweep, name)


def test_slices_run_in_place_when_their_input_dies(sweep):
    for name in ("ss_channels", "ss_channels_mid", "ss_rows"):
        assert sweep["report"].models[name].inplace_ops, name
