"""FULLY_CONNECTED (and the RESHAPE a Flatten adds) against TFLM."""

from tests.ops._harness import Case, matches_tflm, op_names, output_tensor, set_quantization, sweep_fixture


def dense(shape, units, act=None, flatten=False, bias=True, batch=1):
    def build(keras):
        x = keras.Input(shape, batch_size=batch)
        y = keras.layers.Flatten()(x) if flatten else x
        y = keras.layers.Dense(units, activation=act, use_bias=bias)(y)
        return keras.Model(x, y)
    return build


CASES = [
    Case("f_16_10", dense((16,), 10), (16,)),
    Case("f_33_7_relu", dense((33,), 7, "relu"), (33,)),
    Case("f_flatten", dense((4, 4, 3), 5, flatten=True), (4, 4, 3)),
    Case("f_relu6_nobias", dense((20,), 12, "relu6", bias=False), (20,)),
    Case("f_per_tensor", dense((24,), 6), (24,), per_channel=False),
    Case("f_relu6_clamps", dense((20,), 8, "relu6"), (20,),
         patch=lambda m: set_quantization(m, output_tensor(m), 0.1, -40)),   # clamp to [-40, 20]
    # A dynamic batch makes the converter compute the Flatten shape at run time (SHAPE, STRIDED_SLICE,
    # PACK): the reader folds that arithmetic away.
    Case("f_dynamic_batch", dense((3, 2, 4), 5, flatten=True, batch=None), (3, 2, 4)),
]


sweep = sweep_fixture(CASES)
test_fc_matches_tflm = matches_tflm(CASES, "FULLY_CONNECTED")


def test_flatten_is_a_reshape_alias(sweep):
    ops = op_names(sweep, "f_flatten")
    assert ops == ["RESHAPE", "FULLY_CONNECTED"]


def test_shape_arithmetic_is_folded(sweep):
    from tinyexit.codegen import read_model

    g = read_model(sweep["paths"]["f_dynamic_batch"])
    assert "SHAPE" in g.tflm_ops                      # present in the file...
    assert [op.name for op in g.ops] == ["RESHAPE", "FULLY_CONNECTED"]   # ...but not a step
