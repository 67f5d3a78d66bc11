"""FULLY_CONNECTED (and the RESHAPE a Flatten adds) against TFLM."""

from tests.ops._harness import Case, matches_tflm, op_names, output_tensor, set_quantization, sweep_fixture


def input_tensor(model: bytes) -> int:
    import tflite

    return int(tflite.Model.GetRootAsModel(model, 0).Subgraphs(0).Inputs(0))


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




LEFT_SHIFT = "fs_16_8_left_shift"


def _shape_cases():
    """Every input length 1..17 (the kernels' 8-input passes, 4-input groups and 1-3 tails), outputs 1..9
    (4-row blocks and a last block of 1-3 rows), activations, bias or not, per-tensor every third, batch 2
    and 3; plus wide, input zero point far from 0 and a huge per-tensor output scale (exact path)."""
    acts = [None, "relu", "relu6"]
    rows = {5: 2, 12: 2, 16: 3}       # Dense over the last axis of [rows, n]: one FC with `rows` batches

    def shape(n):
        return (rows[n], n) if n in rows else (n,)
    cases = [Case(f"fs_{n}_{o}_{acts[n % 3] or 'none'}{'' if n % 4 else '_nobias'}",
                  dense(shape(n), o, acts[n % 3], bias=n % 4 != 0), shape(n),
                  per_channel=n % 3 != 2)
             for n, o in zip(range(1, 18), [1, 5, 3, 4, 2, 6, 7, 8, 9, 9, 7, 5, 3, 1, 2, 4, 8])]
    return cases + [
        Case("fs_40_13_in_zp", dense((40,), 13, "relu"), (40,),
             patch=lambda m: set_quantization(m, input_tensor(m), 0.02, -100)),      # |input_offset| ~ 100
        Case("fs_96_33_wide", dense((96,), 33), (96,)),
        Case(LEFT_SHIFT, dense((16,), 8, "relu"), (16,), per_channel=False,
             patch=lambda m: set_quantization(m, output_tensor(m), 1e-5, -7)),       # shift >= 0, fast path
        Case("fs_24_6_exact_rq", dense((24,), 6), (24,), per_channel=False,
             patch=lambda m: set_quantization(m, output_tensor(m), 5e-8, 3)),        # left shift 12: tx_mbqm
    ]


SHAPES = _shape_cases()

sweep = sweep_fixture(CASES)
test_fc_matches_tflm = matches_tflm(CASES, "FULLY_CONNECTED")
shape_sweep = sweep_fixture(SHAPES, name="shape_sweep", subdir="fc_shapes")
test_fc_shapes_match_tflm = matches_tflm(SHAPES, "FULLY_CONNECTED", sweep="shape_sweep", n_random=20)


def test_shape_sweep_reaches_the_kernel_paths(shape_sweep):
    """The sweep holds what it claims: every in % 8, out % 4, batches > 1, an exact-requantization layer."""
    from tinyexit.codegen import read_model

    ops = [read_model(p).ops[-1] for p in shape_sweep["paths"].values()]
    assert {op.in_depth % 8 for op in ops} == set(range(8))
    assert {op.out_depth % 4 for op in ops} == set(range(4))
    assert max(op.batches for op in ops) == 3
    assert any(op.needs_exact() for op in ops) and not all(op.needs_exact() for op in ops)
    left = read_model(shape_sweep["paths"][LEFT_SHIFT]).ops[-1]
    assert not left.needs_exact() and max(left.shift) >= 0       # cortex_m4: the general requantization
    others = [read_model(p).ops[-1] for n, p in shape_sweep["paths"].items() if n != LEFT_SHIFT]
    # tests/kernels_m4/test_fc_m4: without LEFT_SHIFT no row of a full 4-row block shifts left
    assert all(max(op.shift) < 0 for op in others if not op.needs_exact() and op.out_depth >= 4)
    assert any(max(op.shift) >= 0 for op in others if op.out_depth < 4)    # ... but the C rows do
    assert any(op.bias is None for op in ops) and any(len(op.mult) == 1 for op in ops)


def test_flatten_is_a_reshape_alias(sweep):
    ops = op_names(sweep, "f_flatten")
    assert ops == ["RESHAPE", "FULLY_CONNECTED"]


def test_shape_arithmetic_is_folded(sweep):
    from tinyexit.codegen import read_model

    g = read_model(sweep["paths"]["f_dynamic_batch"])
    assert "SHAPE" in g.tflm_ops                      # present in the file...
    assert [op.name for op in g.ops] == ["RESHAPE", "FULLY_CONNECTED"]   # ...but not a step


def test_block_layout_and_folded_bias_against_the_plain_sum():
    """The generation-time layout and bias, read back with the index rule of tx_kernels.h (block of r rows at
    o * n; group j of row i at j * r + 4 * i; row i's tail at n4 * r + i * (n % 4)), give TFLM's accumulator
    sum (x + input_offset) * w + bias for random weights, inputs and offsets."""
    import numpy as np

    from tinyexit.codegen.ops.fully_connected import block_layout, folded_bias

    rng = np.random.default_rng(3)
    for n, out_d in [(1, 1), (3, 5), (8, 4), (13, 10), (17, 9), (64, 12), (37, 7)]:
        w = rng.integers(-128, 128, size=(out_d, n)).astype(np.int8)
        flat = block_layout(w)
        assert flat.shape == (n * out_d,) and sorted(flat.tolist()) == sorted(w.ravel().tolist())
        n4 = n // 4 * 4
        for o in range(out_d):
            o0, r = o // 4 * 4, min(4, out_d - o // 4 * 4)
            i, blk = o - o0, flat[o0 * n:(o0 + r) * n]
            row = [blk[j // 4 * 4 * r + 4 * i + j % 4] for j in range(n4)]
            row += [blk[n4 * r + i * (n - n4) + k] for k in range(n - n4)]
            assert row == w[o].tolist()
        for bias in (None, rng.integers(-2**31, 2**31, size=out_d)):
            off = int(rng.integers(-127, 129))
            x = rng.integers(-128, 128, size=n)
            want = (x + off).astype(np.int64) @ w.T.astype(np.int64) + (0 if bias is None else bias)
            got = x.astype(np.int64) @ w.T.astype(np.int64) + folded_bias(w, bias, off)
            assert np.array_equal(got % 2**32, want % 2**32)
