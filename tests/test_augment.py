"""`tinyexit augment`: exit heads attached to a model this project did not build, original weights untouched."""
import json

import numpy as np
import pytest

from tests._data import small_kws_data
from tests._stats import assert_beats_chance, seed


def plain_dscnn(filters=32, blocks=3, classes=12):
    """A DS-CNN written the way a user would (Sequential, default layer names), not with tinyexit's builder."""
    import keras
    from keras import layers

    body = [keras.Input((49, 10, 1)), layers.Conv2D(filters, (10, 4), strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9), layers.ReLU()]
    for _ in range(blocks):
        body += [layers.DepthwiseConv2D(3, padding="same", use_bias=False), layers.BatchNormalization(momentum=0.9),
                 layers.ReLU(), layers.Conv2D(filters, 1, use_bias=False), layers.BatchNormalization(momentum=0.9),
                 layers.ReLU()]
    body += [layers.Dropout(0.2), layers.GlobalAveragePooling2D(), layers.Dense(classes, activation="softmax")]
    return keras.Sequential(body)


@pytest.fixture(scope="module")
def kws_data(tmp_path_factory):
    return small_kws_data(tmp_path_factory)


@pytest.fixture(scope="module")
def plain_model(kws_data, tmp_path_factory):
    """(path of a .keras saved with model.save, the features it was trained on)."""
    import keras

    from tinyexit.train import data_config_for, features_for
    dc = data_config_for(kws_data, train_copies=1)
    x, y = features_for(dc, "train")
    keras.backend.clear_session()          # default layer names (re_lu, re_lu_1, ...) start afresh
    keras.utils.set_random_seed(seed(0))
    m = plain_dscnn()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=20, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("m") / "plain.keras"
    m.save(path)
    return path


@pytest.fixture(scope="module")
def augmented(plain_model, kws_data, tmp_path_factory):
    from tinyexit.cli import main
    out = tmp_path_factory.mktemp("r") / "aug"
    assert main(["augment", str(plain_model), "--task", "kws", "--data", str(kws_data), "--out", str(out),
                 "--point", "re_lu_4", "--point", "re_lu_2", "--width", "16", "--epochs", "8",
                 "--batch-size", "32"]) == 0
    return out


def test_every_original_weight_is_bit_identical(plain_model, augmented):
    import keras

    import tinyexit.models  # noqa: F401
    before = keras.models.load_model(plain_model, compile=False)
    after = keras.models.load_model(augmented / "model.keras", compile=False)
    n = 0
    for lay in before.layers:
        for w0, w1 in zip(lay.get_weights(), after.get_layer(lay.name).get_weights(), strict=True):
            assert w0.dtype == w1.dtype and w0.shape == w1.shape and w0.tobytes() == w1.tobytes(), lay.name
            n += 1
    assert n == (1 + 4) + 3 * (1 + 4 + 1 + 4) + 2    # conv0 + BN, (dw + BN + pw + BN) per block, dense
    # the original layers are reused, not copied: the final output is the original model's
    x = np.random.default_rng(0).normal(size=(8, 49, 10, 1)).astype(np.float32)
    np.testing.assert_array_equal(before.predict(x, verbose=0), after.predict(x, verbose=0)[-1])


def test_run_directory_follows_the_contract(augmented, kws_data):
    from tinyexit.data.speech_commands import CLASSES
    from tinyexit.data.recipe import data_config_for, features_for
    from tinyexit.run import Run

    meta = json.loads((augmented / "model.json").read_text())
    assert [e["point"] for e in meta["exits"]] == ["re_lu_2", "re_lu_4", None]        # ordered by depth
    assert meta["classes"] == list(CLASSES) and meta["input_shape"] == [49, 10, 1]
    model = Run(augmented).load_model()
    assert [t._keras_history.operation.name for t in model.outputs] == ["exit1", "exit2", "dense"]
    # load_split serves the very features the model was trained on
    xt, yt = Run(augmented).split("test")
    x2, y2 = features_for(data_config_for(kws_data, train_copies=1), "test")
    np.testing.assert_array_equal(xt, x2)
    np.testing.assert_array_equal(yt, y2)
    # report accuracies are what the saved model gives, and every trained head learned: it beats guessing
    # (1/12) on the held-out voices, one-sided binomial test at level 1e-3 (holds for TINYEXIT_TEST_SEED=0..4)
    rep = json.loads((augmented / "report.json").read_text())
    preds = model.predict(xt, verbose=0)
    for e, p in zip(rep["exits"], preds):
        right = np.argmax(p, -1) == yt
        assert e["accuracy"] == pytest.approx(float(np.mean(right)))
        assert_beats_chance(right, 1 / len(CLASSES), f"exit {e['name']} on {len(yt)} test clips")
    # MACs: the head width shows (slice of 16 channels: 3x3 depthwise on 13x3x16 -> pool 3x1 -> dense 4*3*16 x 12)
    head_macs = 13 * 3 * 16 * 9 + 4 * 3 * 16 * 12
    assert meta["exits"][0]["macs"] == 160_000 + 36_000 + 128_000 + head_macs
    assert (augmented / "training.png").stat().st_size > 0


def test_quantize_works_on_the_augmented_run(augmented):
    from tinyexit.quantize import quantize_run
    rep = quantize_run(augmented, num_calibration=100, num_eval=60)
    assert rep["whole_model_check"]["identical"] == rep["whole_model_check"]["inputs"] == 60
    man = json.loads((augmented / "quant" / "manifest.json").read_text())
    assert [e["name"] for e in man["exits"]] == ["exit1", "exit2", "dense"]
    for e in rep["exits"]:
        assert e["int8_float_agreement"] >= 0.75


def test_candidate_points_skip_connections_and_fused_layers():
    import keras
    from keras import layers

    from tinyexit.research.graph import candidate_points
    inp = keras.Input((16, 16, 3))
    a = layers.Conv2D(8, 3, padding="same", name="c0")(inp)
    a = layers.BatchNormalization(name="bn0")(a)
    a = layers.ReLU(name="r0")(a)                                   # cut: everything passes through r0
    b = layers.Conv2D(8, 3, padding="same", name="c1")(a)         # inside the residual block: not cuts
    b = layers.ReLU(name="r1")(b)
    b = layers.Conv2D(8, 3, padding="same", name="c2")(b)
    s = layers.Add(name="add")([a, b])                              # ADD + ReLU fuse: the tensor is the ReLU's
    s = layers.ReLU(name="r2")(s)
    s = layers.Dropout(0.1, name="drop")(s)                         # identity at inference
    s = layers.MaxPooling2D(name="pool")(s)                         # 8x8 cut
    t = layers.Conv2D(4, 1, name="c3")(s)                           # 8x8x4, consumed by the flatten
    t = layers.GlobalAveragePooling2D(name="gap")(t)
    out = layers.Dense(5, activation="softmax", name="fc")(t)
    cands = candidate_points(keras.Model(inp, out))
    assert [c["point"] for c in cands] == ["r0", "r2", "pool", "c3"]
    assert cands[0]["shape"] == [16, 16, 8] and cands[0]["macs_to_point"] == 16 * 16 * 8 * 9 * 3
    assert cands[2]["macs_to_point"] == 16 * 16 * 8 * 9 * (3 + 8 + 8)


def test_wrong_data_is_refused_with_the_fix(plain_model, kws_data, tmp_path):
    from tinyexit.errors import TinyexitError
    from tinyexit.research.augment import augment_model
    with pytest.raises(TinyexitError, match="input|classes"):
        augment_model(plain_model, out=tmp_path / "x", task="ic", log=lambda s: None)
    with pytest.raises(TinyexitError, match="not layers where the graph can be cut"):
        augment_model(plain_model, out=tmp_path / "x", points=["dense"], task="kws", data=kws_data, log=lambda s: None)


def test_augment_a_run_directory_replaces_its_exits(augmented, tmp_path, capsys):
    import keras

    import tinyexit.models  # noqa: F401
    from tinyexit.cli import main
    assert main(["augment", str(augmented), "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == ["re_lu", "re_lu_1", "re_lu_2", "re_lu_3", "re_lu_4", "re_lu_5", "re_lu_6"]
    out = tmp_path / "again"
    assert main(["augment", str(augmented), "--out", str(out), "--point", "re_lu_3", "--width", "8",
                 "--head", "conv", "--epochs", "1"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert [e["point"] for e in meta["exits"]] == ["re_lu_3", None]      # the old exits are gone
    assert meta["data"] == json.loads((augmented / "model.json").read_text())["data"]
    before = keras.models.load_model(augmented / "model.keras", compile=False)
    after = keras.models.load_model(out / "model.keras", compile=False)
    assert [lay.name for lay in after.layers if lay.name.startswith("exit1_")][:2] == ["exit1_conv", "exit1_conv_bn"]
    for lay in after.layers:
        if not lay.name.startswith("exit1"):
            for w0, w1 in zip(before.get_layer(lay.name).get_weights(), lay.get_weights(), strict=True):
                assert w0.tobytes() == w1.tobytes()


def test_a_model_ending_in_logits_gets_a_weightless_softmax():
    import keras
    from keras import layers

    from tinyexit.models import exit_spec
    from tinyexit.research.augment import HeadConfig, attach_exits
    keras.utils.set_random_seed(1)
    inp = keras.Input((12, 12, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c0")(inp)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c1")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    logits = layers.Dense(3, name="logits")(x)
    m = keras.Model(inp, logits)
    aug = attach_exits(m, {"c0": HeadConfig(4)}, num_classes=3)
    assert [s["name"] for s in exit_spec(aug)] == ["exit1", "final"]
    assert [s["point"] for s in exit_spec(aug)] == ["c0", None]
    assert len(aug.weights) == len(m.weights) + 1 + 4 + 2          # + depthwise, BN (4), dense (2); slice: none
    xs = np.random.default_rng(0).normal(size=(5, 12, 12, 1)).astype(np.float32)
    out = aug.predict(xs, verbose=0)
    z = m.predict(xs, verbose=0)
    np.testing.assert_allclose(out[-1], np.exp(z) / np.exp(z).sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0].sum(-1), 1, rtol=1e-5)
