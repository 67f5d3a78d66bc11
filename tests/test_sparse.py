"""Sparse weights in the generated C: a pruned model (conv 3x3 with padding, 1x1 conv in place, depthwise in
place and strided, fully connected with more than 255 inputs) stored as sparse run lists, compared with
tflite_micro on the dense (zero-filled) model byte for byte; the storage choice and the encoding itself."""
import numpy as np
import pytest

from tests.conftest import require_program
from tinyexit.codegen import sparse as S

N_INPUTS = 240


def test_encode_round_trip_bridges_long_gaps_and_counts_wide_channels():
    rng = np.random.default_rng(0)
    rows = np.zeros((5, 700), np.int8)
    rows[0, [0, 3, 600, 699]] = [5, -7, 127, -128]        # a gap above 255 needs fillers
    rows[1] = rng.integers(-128, 128, 700) * (rng.random(700) < 0.6)   # > 255 entries: uint16 counts
    rows[3, 256] = 1
    s = S.encode(rows)
    assert s.counts.dtype == np.uint16 and s.counts[2] == 0 and s.counts[4] == 0
    assert np.array_equal(s.decode(700), rows)
    assert s.steps.max() <= 255 and np.sum(s.values == 0) >= 2     # fillers are zero-valued entries
    small = S.encode(rows[[0, 2, 3, 4], :300])
    assert small.counts.dtype == np.uint8 and np.array_equal(small.decode(300), rows[[0, 2, 3, 4], :300])


def _pruned_model(sparsity: float, seed: int = 1):
    import keras
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 9, 3))
    x = keras.layers.Conv2D(16, (3, 3), padding="same", activation="relu", name="c33")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)       # in place
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pw")(x)                            # in place 1x1
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw2")(x)
    x = keras.layers.Conv2D(24, (4, 2), strides=(2, 1), padding="valid", name="c42")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, name="fc")(x)        # 2 x 4 x 24 = 192 inputs
    x = keras.layers.Dense(12, name="fc2")(keras.layers.Concatenate()([x, keras.layers.Flatten()(inp)]))  # 334 inputs
    model = keras.Model(inp, keras.layers.Softmax()(x))
    rng = np.random.default_rng(seed)
    for lay in model.layers:
        w = lay.get_weights()
        if w and lay.name in ("c33", "dw", "pw", "dw2", "c42", "fc", "fc2"):
            k = w[0] * (rng.random(w[0].shape) >= sparsity)
            if lay.name == "pw":
                k[..., 3] = 0                       # one output channel with no weight at all
            w[0] = k
            if len(w) > 1:
                w[1] = rng.normal(size=w[1].shape).astype(np.float32) * 0.1
            lay.set_weights(w)
    return model


@pytest.fixture(scope="module")
def pruned_tflite(tmp_path_factory):
    from tinyexit.quantize import convert_int8
    rng = np.random.default_rng(2)
    model = _pruned_model(0.8)
    tfl = convert_int8(model, rng.normal(size=(64, 12, 9, 3)).astype(np.float32))
    path = tmp_path_factory.mktemp("sparse") / "pruned.tflite"
    path.write_bytes(tfl)
    return path


def test_pruned_layers_are_stored_sparse_and_smaller(pruned_tflite):
    table = S.weight_table({"pruned": pruned_tflite})
    kinds = {la["op"] for la in table["layers"] if la["format"] == "sparse"}
    assert kinds == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert table["sparse_layers"] == 7
    assert table["stored_bytes"] < 0.7 * table["dense_bytes"]
    for la in table["layers"]:
        assert la["zeros"] >= 0.6 * la["weight_elements"]


def test_dense_layers_stay_dense(tmp_path):
    from tinyexit.quantize import convert_int8
    rng = np.random.default_rng(3)
    model = _pruned_model(0.0)
    p = tmp_path / "dense.tflite"
    p.write_bytes(convert_int8(model, rng.normal(size=(32, 12, 9, 3)).astype(np.float32)))
    table = S.weight_table({"dense": p})
    assert table["sparse_layers"] == 0 and table["stored_bytes"] == table["dense_bytes"]


@pytest.mark.parametrize("kernels", ["reference", "cortex_m4"])    # host: cortex_m4 builds its portable branch
@pytest.mark.parametrize("inplace", [True, False])
def test_sparse_c_equals_tflm_on_the_dense_model(pruned_tflite, tmp_path, inplace, kernels):
    require_program("gcc", "apt-get install -y gcc make")
    from tinyexit.codegen import generate
    from tinyexit.conformance import build_host, run_host, structured_inputs, tflm_outputs

    rep = generate({"pruned": pruned_tflite}, tmp_path / "lib", measure=False, compare_tflm=False, inplace=inplace,
                   kernels=kernels)
    assert rep.weight_bytes == S.weight_table({"pruned": pruned_tflite})["stored_bytes"]
    src = (tmp_path / "lib" / "tx_model_pruned.c").read_text()
    assert "tx_sparse_conv_s8" in src and "tx_sparse_dwconv_s8" in src and "tx_sparse_fc_s8" in src
    assert (len(rep.models["pruned"].inplace_ops) >= 2) == inplace
    fig = rep.models["pruned"]
    rng = np.random.default_rng(4)
    zp = int(np.round(0))
    x = np.concatenate([structured_inputs((12, 9, 3), zp, rng),
                        rng.integers(-128, 128, size=(N_INPUTS, 12, 9, 3))]).astype(np.int8)
    want = tflm_outputs(pruned_tflite, x)
    exe = build_host(tmp_path / "lib")
    got = run_host(exe, "pruned", x.reshape(len(x), -1), fig.output_size)
    assert len(x) >= 200
    assert got.tobytes() == want.tobytes()
    assert len({r.tobytes() for r in got}) > 50          # not vacuous: the outputs vary
    chunked = run_host(exe, "pruned", x[:40].reshape(40, -1), fig.output_size, chunk=1, scramble=True)
    assert chunked.tobytes() == want[:40].tobytes()
