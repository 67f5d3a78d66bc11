"""ADD of two activations with different scales, with and without a fused RELU, against TFLM."""

from tests.ops._harness import Case, matches_tflm, op_names, sweep_fixture


def add(shape, relu=False, scale2=3.0):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        a = keras.layers.Conv2D(shape[-1], 1)(x)
        b = keras.layers.Conv2D(shape[-1], 3, padding="same")(x)
        b = keras.layers.Rescaling(scale2)(b)
        y = keras.layers.Add()([a, b])
        if relu:
            y = keras.layers.ReLU()(y)
        return keras.Model(x, y)
    return build


def residual(shape):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        a = keras.layers.Conv2D(shape[-1], 3, padding="same", activation="relu")(x)
        b = keras.layers.Conv2D(shape[-1], 3, padding="same")(a)
        return keras.Model(x, keras.layers.ReLU()(keras.layers.Add()([a, b])))
    return build


def unfusable(shape):
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        a = keras.layers.Conv2D(shape[-1], 3, padding="same", activation="relu")(x)
        b = keras.layers.MaxPooling2D(3, strides=1, padding="same")(a)   # a has two readers: no fusion
        return keras.Model(x, keras.layers.Add()([a, b]))
    return build


CASES = [
    Case("a_plain", add((6, 6, 4)), (6, 6, 4)),
    Case("a_unfused", unfusable((5, 6, 3)), (5, 6, 3)),
    Case("a_relu", add((5, 7, 3), relu=True, scale2=0.2), (5, 7, 3)),
    Case("a_residual", residual((6, 6, 8)), (6, 6, 8)),
]


sweep = sweep_fixture(CASES)
test_add_matches_tflm = matches_tflm(CASES, {"ADD", "CONV_2D+ADD"})


def test_fusion_choices(sweep):
    assert "ADD" in op_names(sweep, "a_unfused") and "CONV_2D+ADD" not in op_names(sweep, "a_unfused")
    assert "CONV_2D+ADD" in op_names(sweep, "a_residual") and "ADD" not in op_names(sweep, "a_residual")
    # The fused step needs no buffer for the conv result: two 6x6x8 buffers, not three, beside the kernel work
    # space the arena also holds (cortex_m4: its tables; a third buffer would not fit under this bound).
    r = sweep["report"].models["a_residual"]
    assert r.arena_bytes <= 2 * 6 * 6 * 8 + 8 + r.scratch_bytes


def test_unfused_library_gives_the_same_bytes(sweep, tmp_path):
    import numpy as np

    from tinyexit.codegen import generate, read_model
    from tinyexit.conformance import build_host, run_host

    paths = {n: sweep["paths"][n] for n in ("a_plain", "a_residual")}
    generate(paths, tmp_path / "lib", fuse_ops=False, inplace=False, measure=False, compare_tflm=False)
    exe = build_host(tmp_path / "lib")
    for name, path in paths.items():
        g = read_model(path)
        x = np.random.default_rng(2).integers(-128, 128, size=(20, *g.input.shape[1:])).astype(np.int8)
        np.testing.assert_array_equal(run_host(exe, name, x, g.output.nbytes),
                                      run_host(sweep["exe"], name, x, g.output.nbytes))
