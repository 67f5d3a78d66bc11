"""CONCATENATION along channels and along a spatial axis, against TFLM."""

from tests.ops._harness import Case, matches_tflm, sweep_fixture


def cat(shape, axis, n=2):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        parts = [keras.layers.Conv2D(2 + i, 1 + 2 * (i % 2), padding="same")(x) for i in range(n)]
        if axis != -1:
            parts = [keras.layers.Conv2D(3, 1)(p) for p in parts]
        return keras.Model(x, keras.layers.Concatenate(axis=axis)(parts))
    return build


def early_view(shape):
    """Like our final classifier with early-view assistance: one feature map feeds a pooled branch and a
    sliced depthwise branch, concatenated."""
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        f = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        b = keras.layers.Lambda(lambda t: t[..., :4])(f)
        b = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(b)
        b = keras.layers.Flatten()(keras.layers.AveragePooling2D(2)(b))
        a = keras.layers.Flatten()(keras.layers.AveragePooling2D(shape[:2])(f))
        y = keras.layers.Concatenate()([b, a])
        return keras.Model(x, keras.layers.Dense(3)(y))
    return build


CASES = [
    Case("cat_early_view", early_view((8, 8, 2)), (8, 8, 2)),
    Case("cat_channels", cat((5, 5, 3), -1), (5, 5, 3)),
    Case("cat_three", cat((4, 6, 2), -1, n=3), (4, 6, 2)),
    Case("cat_rows", cat((4, 5, 2), 1), (4, 5, 2)),
]


sweep = sweep_fixture(CASES)
test_concatenation_matches_tflm = matches_tflm(CASES, "CONCATENATION")


def test_branch_order_chosen_for_memory(sweep, tmp_path):
    """Listed slice branch first (as the converter did in a trained run), the feature map stays alive
    beside the slice; the scheduler runs the pooled branch first so the map dies at the slice (in place).
    The reordered library still gives TFLM's bytes. (The slice is kept as its own op here: unfused from
    the depthwise, as generate keeps it when that plans less.)"""
    from dataclasses import replace

    import numpy as np

    from tinyexit.codegen import plan_memory, read_model
    from tinyexit.codegen.emit import emit_library
    from tinyexit.codegen.fuse import fuse_conv_add
    from tinyexit.codegen.schedule import schedule
    from tinyexit.conformance import build_host, run_host, tflm_outputs

    path = sweep["paths"]["cat_early_view"]
    g = fuse_conv_add(read_model(path))
    names = [op.name for op in g.ops]
    slice_at = names.index("STRIDED_SLICE")
    branch = list(range(slice_at, names.index("CONCATENATION")))     # slice .. its reshape
    pooled = [i for i in range(1, slice_at)]                          # the pooled branch the file runs first
    order = [0] + branch + pooled + list(range(names.index("CONCATENATION"), len(names)))
    slice_first = replace(g, ops=tuple(replace(g.ops[i], index=k) for k, i in enumerate(order)))
    before = plan_memory(slice_first)
    scheduled = schedule(slice_first)
    after = plan_memory(scheduled)
    assert after.arena_bytes < before.arena_bytes
    lib = tmp_path / "lib"
    lib.mkdir()
    emit_library({"slice_first": slice_first, "scheduled": scheduled},
                 {"slice_first": before, "scheduled": after}, lib)
    exe = build_host(lib)
    x = np.random.default_rng(4).integers(-128, 128, size=(30, *g.input.shape[1:])).astype(np.int8)
    want = tflm_outputs(path, x)
    for name in ("slice_first", "scheduled"):
        np.testing.assert_array_equal(run_host(exe, name, x, g.output.nbytes), want, err_msg=name)
