"""The cortex_m4 sparse kernels (tx_sparse_conv: quads of pixels, assembly accumulation; tx_sparse_fc) on the
emulated Cortex-M4, byte-exact with tflite_micro on the dense (zero-filled) models: the pruned model of
tests/test_sparse.py (3x3 with padding, 1x1 in place, strided, fully connected over 255 inputs), one with a
3x3 conv in place (the ring) after a conv whose channels hold more than 255 entries (uint16 counts: the C
accumulation) and ReLU6 clamps, and one whose output scale forces the exact requantization. Every model is
also run unit by unit with the arena outside live[] scrambled; one firmware with every sparse conv path,
one with the ring model alone (no exact requantization: only its paths)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.kernels_m4._firmware import Job, parse, require_emulator, run_jobs
from tests.ops._harness import output_tensor, set_quantization
from tests.test_sparse import _pruned_model

pytestmark = pytest.mark.emulator


def _prune(model, sparsity: dict, seed: int):
    rng = np.random.default_rng(seed)
    for lay in model.layers:
        w = lay.get_weights()
        if w and lay.name in sparsity:
            w[0] = w[0] * (rng.random(w[0].shape) >= sparsity[lay.name])
            if len(w) > 1:
                w[1] = rng.normal(size=w[1].shape).astype(np.float32) * 0.1
            lay.set_weights(w)
    return model


def _ring_model():
    import keras
    keras.utils.set_random_seed(5)
    inp = keras.Input((5, 6, 96))
    x = keras.layers.Conv2D(8, 3, padding="same", name="wide")(inp)                  # 864 taps, ~345 kept
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu6", name="ring")(x)  # in place, 3x3
    x = keras.layers.Conv2D(8, (2, 3), strides=(1, 2), padding="same", name="odd")(x)  # odd kernel, strided
    return _prune(keras.Model(inp, x), {"wide": 0.6, "ring": 0.75, "odd": 0.7}, 5)


def _exact_model():
    import keras
    keras.utils.set_random_seed(6)
    inp = keras.Input((4, 5, 16))
    x = keras.layers.Conv2D(12, 1, name="pw")(inp)
    return _prune(keras.Model(inp, x), {"pw": 0.8}, 6)


def test_sparse_kernels_match_tflm_on_the_emulator(tmp_path):
    require_emulator()
    from tinyexit.quantize import convert_int8

    rng = np.random.default_rng(7)
    models = {}
    for name, build, shape in [("pruned", lambda: _pruned_model(0.8), (12, 9, 3)),
                               ("ring", _ring_model, (5, 6, 96)), ("exact", _exact_model, (4, 5, 16))]:
        tfl = convert_int8(build(), rng.normal(size=(32, *shape)).astype(np.float32))
        if name == "exact":   # a tiny output scale: multipliers > 1, the bound check fails -> tx_mbqm
            tfl = set_quantization(tfl, output_tensor(tfl), 1e-5, 3)
        models[name] = (tmp_path / f"{name}.tflite", shape)
        models[name][0].write_bytes(tfl)
    # Two libraries: all three models (every path), and without the exact one (TX_SPC_EXACT 0: the paths
    # a library needs only, as features.py emits them).
    for lib_name, names, exact in [("lib", list(models), 1), ("lib_fast", ["ring"], 0)]:
        _run_library(tmp_path / lib_name, {n: models[n] for n in names}, exact, rng)


def _run_library(work, models, exact, rng):
    from tinyexit.codegen import generate
    from tinyexit.conformance import structured_inputs, tflm_outputs

    lib = work / "lib"
    rep = generate({n: p for n, (p, _) in models.items()}, lib, kernels="cortex_m4", compare_tflm=False,
                   measure=False)
    if "pruned" in models:
        assert "tx_sparse_fc_s8" in (lib / "tx_model_pruned.c").read_text() and rep.models["pruned"].inplace_ops
    src = "".join((lib / f"tx_model_{n}.c").read_text() for n in models)
    assert src.count("tx_sparse_conv_s8") >= 3 and "uint16_t op0_wn" in src
    features = (lib / "tx_sparse_conv.c").read_text()
    for flag in ("TX_SPC_IM2COL 1", "TX_SPC_RING 1", f"TX_SPC_EXACT {exact}"):
        assert flag in features
    assert rep.models["ring"].inplace_ops

    jobs, want = [], {}
    for name, (path, shape) in models.items():
        x = np.concatenate([structured_inputs(shape, 0, rng)[:8],
                            rng.integers(-128, 128, size=(12, *shape))]).astype(np.int8)
        want[name] = tflm_outputs(path, x)
        jobs.append(Job(name, x.reshape(len(x), -1), rep.models[name].output_size, chunked=4))
    out = run_jobs(lib, jobs, work, timeout=600)[0].output
    got, _ = parse(out, jobs)
    for name in models:
        assert got[name].tobytes() == want[name].tobytes(), name
        assert len({r.tobytes() for r in got[name]}) > 5, name      # not vacuous
