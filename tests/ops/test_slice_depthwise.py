"""STRIDED_SLICE over channels -> DEPTHWISE_CONV_2D, fused into one step (the depthwise reads the slice where
it lies in the map: input pixel stride and channel offset), against TFLM: offsets 0 and > 0, depth multipliers
1 and 2, strides 1 and 2, SAME/VALID, sparse weights; and the slices that must not fuse."""
import numpy as np
import pytest

from tests.ops._harness import Case, check, op_names

FUSED = "STRIDED_SLICE+DEPTHWISE_CONV_2D"


def slice_dw(shape, lo, hi, k=3, s=1, pad="same", mult=1, act=None, zero_weights=0.0, twice=False):
    """x[..., lo:hi] -> DepthwiseConv2D (`twice`: the slice also read by a 3x3 max pool, outputs added)."""
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        t = keras.layers.Lambda(lambda v: v[..., lo:hi])(x)
        dw = keras.layers.DepthwiseConv2D(k, strides=s, padding=pad, depth_multiplier=mult, activation=act)
        y = dw(t)
        if zero_weights:
            w, b = dw.get_weights()
            keep = np.random.default_rng(3).random(w.shape) >= zero_weights
            dw.set_weights([w * keep, b])
        if twice:
            y = keras.layers.Add()([y, keras.layers.MaxPooling2D(3, strides=1, padding="same")(t)])
        return keras.Model(x, y)
    return build


def producer(shape):
    """The map: what a segment leaves in the arena for its exit head (read in place through the chain)."""
    def build(keras):
        x = keras.Input(shape, batch_size=1)
        return keras.Model(x, keras.layers.Conv2D(shape[-1], 1, activation="relu")(x))
    return build


CASES = [
    Case("sd_first_k3s1_same", slice_dw((6, 5, 8), 0, 4), (6, 5, 8)),
    Case("sd_mid_k3s1_same", slice_dw((6, 5, 8), 3, 7), (6, 5, 8)),
    Case("sd_mid_c5_k3s1_valid", slice_dw((6, 5, 8), 1, 6, pad="valid"), (6, 5, 8)),   # 5 channels, VALID
    Case("sd_last_k3s2_same_relu", slice_dw((7, 6, 12), 4, 12, s=2, act="relu"), (7, 6, 12)),
    Case("sd_mid_k2s2_valid", slice_dw((8, 8, 10), 2, 7, k=2, s=2, pad="valid"), (8, 8, 10)),
    Case("sd_first_m2_s1_same", slice_dw((5, 6, 6), 0, 3, mult=2), (5, 6, 6)),
    Case("sd_mid_m2_s2_valid", slice_dw((9, 7, 7), 1, 5, s=2, pad="valid", mult=2, act="relu6"), (9, 7, 7)),
    Case("sd_mid_k5_same", slice_dw((7, 6, 9), 1, 9, k=5), (7, 6, 9)),
    Case("sd_head_like_k2s2", slice_dw((25, 5, 64), 0, 32, k=2, s=2, pad="valid"), (25, 5, 64)),
    Case("sd_sparse_mid", slice_dw((6, 6, 16), 4, 12, zero_weights=0.8), (6, 6, 16)),
    Case("sd_slice_read_twice", slice_dw((6, 6, 8), 2, 6, s=1, twice=True), (6, 6, 8)),
]
UNFUSED = {"sd_slice_read_twice"}     # the slice has a second reader


def chained_sweep(cases, work, kernels):
    """One library: per case a producer model and the case reading its output in place (an exit head's
    situation: the map stays intact, so the slice cannot run over it), built for the host."""
    from tests.ops._harness import convert
    from tinyexit.codegen import Link, generate
    from tinyexit.conformance import build_host

    paths = {}
    for c in cases:
        for name, case in ((c.name, c), (f"{c.name}_map", Case(f"{c.name}_map", producer(c.input_shape),
                                                                c.input_shape))):
            p = work / f"{name}.tflite"
            if not p.exists():
                p.write_bytes(convert(case))
            paths[name] = p
    out = work / f"lib_{kernels}"
    report = generate(paths, out, kernels=kernels, measure=False, compare_tflm=False,
                      chain=[Link(f"{c.name}_map", (c.name,), None) for c in cases])
    assert report.chained
    return {"paths": paths, "exe": build_host(out), "report": report, "out": out}


@pytest.fixture(scope="module")
def sweep(ops_workdir, kernels):
    work = ops_workdir / "slice_dw"
    work.mkdir(exist_ok=True)
    return chained_sweep(CASES, work, kernels)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_slice_depthwise_matches_tflm(sweep, name):
    check(sweep, name)


@pytest.mark.parametrize("name", [c.name for c in CASES if c.name not in UNFUSED])
def test_channel_slice_fuses(sweep, name):
    fig = sweep["report"].models[name]
    assert fig.ops == [FUSED], fig.ops
    assert fig.inplace_ops == []          # the map is read, never written


def test_slice_with_two_readers_stays(sweep):
    ops = op_names(sweep, "sd_slice_read_twice")
    assert "STRIDED_SLICE" in ops and "DEPTHWISE_CONV_2D" in ops and FUSED not in ops, ops


def test_fused_sparse_weights(sweep):
    assert "tx_sparse_dwconv_s8" in (sweep["out"] / "tx_model_sd_sparse_mid.c").read_text()


def test_fusion_only_when_it_plans_less(ops_workdir, kernels):
    """Alone, the head's map dies at the slice, which then runs in place over it: the unfused pair plans the
    smaller arena and is kept. Chained (map kept intact) the fused step saves the slice's bytes."""
    from tinyexit.codegen import Link, generate

    work = ops_workdir / "slice_dw"
    paths = {n: work / f"{n}.tflite" for n in ("sd_head_like_k2s2", "sd_head_like_k2s2_map")}
    alone = generate({"h": paths["sd_head_like_k2s2"]}, ops_workdir / "sd_alone", measure=False,
                     compare_tflm=False)
    assert alone.models["h"].ops == ["STRIDED_SLICE", "DEPTHWISE_CONV_2D"]
    # Beside a model that needs a larger arena anyway, the fused step costs nothing: fused again.
    from tests.ops._harness import convert
    big = ops_workdir / "sd_big.tflite"
    if not big.exists():
        big.write_bytes(convert(Case("sd_big", producer((40, 10, 64)), (40, 10, 64))))
    beside = generate({"h": paths["sd_head_like_k2s2"], "big": big}, ops_workdir / "sd_beside", measure=False,
                      compare_tflm=False)
    assert beside.models["h"].ops == [FUSED] and beside.arena_bytes == beside.models["big"].arena_bytes
    kw = dict(measure=False, compare_tflm=False, chain=[Link("m", ("h",), None)])
    models = {"m": paths["sd_head_like_k2s2_map"], "h": paths["sd_head_like_k2s2"]}
    fused = generate(models, ops_workdir / "sd_fused", **kw)
    plain = generate(models, ops_workdir / "sd_plain", fuse_ops=False, **kw)
    assert fused.chained and plain.chained and fused.models["h"].ops == [FUSED]
    # 25x5x64 map, 25x5x32 slice, 12x2x32 output
    assert fused.models["h"].arena_bytes == 8000 + 768
    assert plain.models["h"].arena_bytes - fused.models["h"].arena_bytes == 4000
