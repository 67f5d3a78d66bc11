"""CONV_2D against TFLM: shapes, strides, SAME/VALID, activations, per-channel and per-tensor weights."""

from tests.ops._harness import Case, matches_tflm, output_tensor, random_window, set_quantization, sweep_fixture


def wide_output(scale, zero_point):
    """Give the model's output a wider range than its fused activation, so the clamp really cuts."""
    return lambda m: set_quantization(m, output_tensor(m), scale, zero_point)


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
    Case("c_relu6_clamps", conv((6, 6, 3), 4, 3, 1, "same", "relu6"), (6, 6, 3),
         patch=wide_output(0.02, -20)),      # 0 -> -20, 6 -> 280: clamp to [-20, 127]
    Case("c_relu6_clamps_top", conv((6, 6, 3), 4, 3, 1, "same", "relu6"), (6, 6, 3),
         patch=wide_output(0.1, -40)),       # 0 -> -40, 6 -> 20: clamp to [-40, 20]
    Case("c_relu_clamps", conv((6, 6, 3), 4, 3, 1, "same", "relu"), (6, 6, 3), patch=wide_output(0.05, 10)),
    Case("c_per_tensor", conv((8, 8, 3), 4, 3, 1, "same", "relu"), (8, 8, 3), per_channel=False),
    Case("c_per_tensor_inplace", conv((6, 6, 4), 4, 3, 1, "same"), (6, 6, 4), per_channel=False),
]


sweep = sweep_fixture(CASES)
test_conv_matches_tflm = matches_tflm(CASES, ["CONV_2D"])


def test_clamp_cases_have_narrow_activation_ranges(sweep):
    from tinyexit.codegen import read_model

    assert read_model(sweep["paths"]["c_relu6_clamps"]).ops[0].act == (-20, 127)
    assert read_model(sweep["paths"]["c_relu6_clamps_top"]).ops[0].act == (-40, 20)
    assert read_model(sweep["paths"]["c_relu_clamps"]).ops[0].act == (10, 127)


def test_inplace_cases_really_run_in_place(sweep):
    for name in ("c_k1_inplace", "c_k3_inplace_ring", "c_per_tensor_inplace"):
        assert sweep["report"].models[name].inplace_ops == [0], name


def _random_cases(n=10, seed=7):
    """Random shapes / kernels / strides / paddings / activations (fixed seed: reproducible)."""
    import random

    r = random.Random(seed)
    cases = []
    for i in range(n):
        (h, w, c), (kh, kw), (sh, sw), pad = random_window(r)
        act = r.choice([None, "relu", "relu6"])
        cases.append(Case(f"c_rand{i}_{h}x{w}x{c}_k{kh}x{kw}_s{sh}{sw}_{pad}", conv((h, w, c), r.randint(1, 7),
                                                                                 (kh, kw), (sh, sw), pad, act),
                          (h, w, c), per_channel=r.random() < 0.7))
    return cases


RANDOM = _random_cases()


random_sweep = sweep_fixture(RANDOM, name="random_sweep", subdir="random_conv")
test_random_conv_matches_tflm = matches_tflm(RANDOM, sweep="random_sweep", n_random=20)
