"""DEPTHWISE_CONV_2D against TFLM: depth multipliers 1 and 2, strides, SAME/VALID, activations,
per-channel and per-tensor weights, in place."""

from tests.ops._harness import Case, matches_tflm, output_tensor, random_window, set_quantization, sweep_fixture


def dw(shape, k, s, pad, mult=1, act=None):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        y = keras.layers.DepthwiseConv2D(k, strides=s, padding=pad, depth_multiplier=mult, activation=act)(x)
        return keras.Model(x, y)
    return build


CASES = [
    Case("d_k3s1_same_inplace", dw((8, 6, 4), 3, 1, "same"), (8, 6, 4)),
    Case("d_k3s2_same_m2", dw((9, 7, 3), 3, 2, "same", 2), (9, 7, 3)),
    Case("d_k2s2_valid_relu", dw((8, 8, 5), 2, 2, "valid", 1, "relu"), (8, 8, 5)),
    Case("d_k3x1_m2_relu6", dw((7, 5, 2), (3, 1), 1, "same", 2, "relu6"), (7, 5, 2)),
    Case("d_k5s1_valid", dw((9, 9, 3), 5, 1, "valid"), (9, 9, 3)),
    Case("d_k4s2_same_even", dw((10, 7, 3), 4, 2, "same"), (10, 7, 3)),
    Case("d_kernel_bigger_than_input", dw((3, 2, 4), 5, 1, "same"), (3, 2, 4)),
    Case("d_k5_inplace_m1", dw((7, 6, 3), 5, 1, "same"), (7, 6, 3)),
    Case("d_m3_s1", dw((5, 5, 2), 3, 1, "same", 3), (5, 5, 2)),
    Case("d_relu6_clamps", dw((6, 5, 4), 3, 1, "same", 1, "relu6"), (6, 5, 4),
         patch=lambda m: set_quantization(m, output_tensor(m), 0.1, -40)),   # clamp to [-40, 20]
    Case("d_per_tensor", dw((8, 6, 4), 3, 1, "same", 1, "relu"), (8, 6, 4), per_channel=False),
    Case("d_per_tensor_m2", dw((6, 6, 3), 3, 2, "valid", 2), (6, 6, 3), per_channel=False),
]


sweep = sweep_fixture(CASES)
test_depthwise_matches_tflm = matches_tflm(CASES, ["DEPTHWISE_CONV_2D"])


def test_inplace_case_runs_in_place(sweep):
    assert sweep["report"].models["d_k3s1_same_inplace"].inplace_ops == [0]


def _random_cases(n=10, seed=11):
    """Random shapes / kernels / strides / multipliers / paddings / activations (fixed seed)."""
    import random

    r = random.Random(seed)
    cases = []
    for i in range(n):
        (h, w, c), (kh, kw), (sh, sw), pad = random_window(r)
        mult = r.choice([1, 1, 2, 3])
        cases.append(Case(f"d_rand{i}_{h}x{w}x{c}_k{kh}x{kw}_s{sh}{sw}_m{mult}_{pad}",
                          dw((h, w, c), (kh, kw), (sh, sw), pad, mult, r.choice([None, "relu", "relu6"])),
                          (h, w, c), per_channel=r.random() < 0.7))
    return cases


RANDOM = _random_cases()


random_sweep = sweep_fixture(RANDOM, name="random_sweep", subdir="random_dw")
test_random_depthwise_matches_tflm = matches_tflm(RANDOM, sweep="random_sweep", n_random=20)
