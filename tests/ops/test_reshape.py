"""RESHAPE: no code, the output shares the input's arena range; results equal TFLM."""

from tests.ops._harness import Case, matches_tflm, sweep_fixture


def reshape(shape, target):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        y = keras.layers.Conv2D(4, 1)(x)
        y = keras.layers.Reshape(target)(y)
        return keras.Model(x, keras.layers.Conv2D(3, 3, padding="same")(y))
    return build


CASES = [Case("r_swap_hw", reshape((4, 6, 2), (6, 4, 4)), (4, 6, 2)),
         Case("r_fold_w", reshape((6, 4, 3), (12, 2, 4)), (6, 4, 3))]


sweep = sweep_fixture(CASES)
test_reshape_matches_tflm = matches_tflm(CASES, ["CONV_2D", "RESHAPE", "CONV_2D"])


def test_reshape_is_an_alias(sweep):
    from tinyexit.codegen import plan_memory, read_model

    g = read_model(sweep["paths"]["r_swap_hw"])
    plan = plan_memory(g)
    r = g.ops[1]
    assert plan.offsets[r.inputs[0]] == plan.offsets[r.outputs[0]]
