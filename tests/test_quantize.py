"""int8 by segments: the chained int8 pieces against an int8 conversion of the whole model (TFLM, the
firmware's oracle), the split against the float model, and the run-level quantize + calibrate stages."""
import json

import numpy as np
import pytest

from tinyexit import quantize as Q
from tinyexit.errors import TinyexitError
from tinyexit.run import QuantDir, Run

NUM_CLASSES = 12


def small_dscnn():
    from tinyexit.models import DSCNNConfig, build_dscnn
    # two early exits, so the split is exercised beyond the single-exit case
    return build_dscnn(DSCNNConfig(filters=16, blocks=3, exits_after=(1, 2), head_channels=8))


def make_data(n, seed):
    """Templates + noise: learnable in a few steps, so batch norm and weights move away from their init."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(99).normal(size=(NUM_CLASSES, 49, 10, 1)).astype(np.float32) * 3
    y = rng.integers(0, NUM_CLASSES, size=n)
    x = templates[y] + rng.normal(size=(n, 49, 10, 1)).astype(np.float32) * 3
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def trained():
    import keras
    keras.utils.set_random_seed(0)
    model = small_dscnn()
    x, y = make_data(600, 0)
    n_out = len(model.outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy"] * n_out)
    model.fit(x, [y] * n_out, epochs=2, batch_size=50, verbose=0)
    from tinyexit.models import exit_spec
    points = [s["point"] for s in exit_spec(model)[:-1]]
    return model, points, x, y


@pytest.fixture(scope="module", params=["cut", "convert"])
def pieces(trained, request):
    model, points, x, _ = trained
    return Q.quantize_model(model, points, x[:200], method=request.param)


def test_float_segments_chain_to_the_whole_model(trained):
    model, points, _, _ = trained
    segs, heads = Q.split_model(model, points)
    assert len(segs) == 3 and len(heads) == 2
    x, _ = make_data(16, 1)
    whole = model.predict(x, verbose=0)
    acts = [x]
    for s in segs:
        acts.append(s.predict(acts[-1], verbose=0))
    np.testing.assert_allclose(acts[-1], whole[-1], atol=1e-5)
    for k, h in enumerate(heads):
        np.testing.assert_allclose(h.predict(acts[k + 1], verbose=0), whole[k], atol=1e-5)


def test_chained_int8_segments_equal_the_whole_int8_model(trained, pieces):
    model, _, xtrain, _ = trained
    x, _ = make_data(120, 2)
    pipe = Q.Int8Pipeline(pieces["segments"], pieces["heads"], [0, 1])
    chained = pipe.run(x)
    whole = Q.TflmModel(Q.convert_int8(model, xtrain[:200]))   # a conversion of its own, not the one cut
    assert Q.tensor_qparams(whole.tfl, "input") == pipe.input_qparams
    ref = whole.run(Q.quantize_array(x, pipe.input_qparams))
    assert len(chained) == len(ref) == 3
    for a, b in zip(chained, ref):
        assert a.dtype == np.int8 and a.shape == (120, NUM_CLASSES)
        assert a.tobytes() == b.reshape(120, -1).tobytes()
    # not vacuous: the outputs vary across inputs and the exits disagree with the final exit somewhere
    assert len({r.tobytes() for r in chained[-1]}) > 10
    assert np.any(np.argmax(chained[0], 1) != np.argmax(chained[-1], 1))


def test_boundary_parameters_agree_exactly(pieces):
    segs, heads = pieces["segments"], pieces["heads"]
    for k in range(len(segs) - 1):
        out = Q.tensor_qparams(segs[k], "output")
        assert Q.tensor_qparams(segs[k + 1], "input") == out
        assert Q.tensor_qparams(heads[k], "input") == out
    for rec in pieces["boundaries"]:
        assert all(a["relative_scale_change"] < 1e-3 for a in rec.get("adjusted", []))


def test_cut_pieces_partition_the_whole_model(trained):
    """Every operator of the whole int8 model lands in exactly one piece (its weights: the bit-exact tests)."""
    import tflite
    model, points, x, _ = trained
    q = Q.quantize_model(model, points, x[:200], method="cut")

    def ops(b):
        m = tflite.Model.GetRootAsModel(b, 0)
        g = m.Subgraphs(0)
        return [Q._opcode(m, g.Operators(i)) for i in range(g.OperatorsLength())]

    parts = q["segments"] + q["heads"]
    assert sorted(sum((ops(b) for b in parts), [])) == sorted(ops(q["whole"]))
    assert all(len(b) < len(q["whole"]) for b in parts)
    assert sum(Q.count_macs(b) for b in parts) == Q.count_macs(q["whole"])


def test_set_input_qparams_patches_only_the_input_parameters(trained):
    model, points, x, _ = trained
    tfl = Q.convert_int8(Q.split_model(model, points)[0][1], Q.boundary_activations(model, points, x[:50])[0])
    qp = Q.QParams(0.125, 3)
    patched = Q.set_input_qparams(tfl, qp)
    assert Q.tensor_qparams(patched, "input") == qp
    assert Q.tensor_qparams(patched, "output") == Q.tensor_qparams(tfl, "output")
    diff = [i for i, (a, b) in enumerate(zip(tfl, patched)) if a != b]
    assert len(patched) == len(tfl) and 0 < len(diff) <= 12          # one float32 and one int64
    # the interpreter honours the new parameters: the same int8 input now means other real values
    m0, m1 = Q.TflmModel(tfl), Q.TflmModel(patched)
    z = np.full([1] + m0.input_shape[1:], 3, np.int8)
    assert m0.run(z)[0].tobytes() != m1.run(z)[0].tobytes()


def test_macs_of_the_pieces_add_up_to_the_keras_count(trained, pieces):
    from tinyexit.models import macs_per_exit
    model, _, _, _ = trained
    per_exit = macs_per_exit(model)
    seg = [Q.count_macs(b) for b in pieces["segments"]]
    head = [Q.count_macs(b) for b in pieces["heads"]]
    assert seg[0] + head[0] == per_exit["exit1"]
    assert seg[0] + seg[1] + head[1] == per_exit["exit2"]
    assert sum(seg) == per_exit["final"]


def test_a_skip_connection_across_the_exit_point_is_refused():
    import keras
    from keras import layers
    inp = keras.Input((8, 8, 1))
    a = layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = layers.ReLU(name="point")(a)
    c = layers.Add()([layers.Conv2D(4, 3, padding="same")(b), a])     # `a` skips over the exit point
    e = layers.Softmax(name="exit1")(layers.Dense(3)(layers.Flatten()(b)))
    f = layers.Softmax(name="final")(layers.Dense(3)(layers.Flatten()(c)))
    with pytest.raises(TinyexitError, match="skip connection"):
        Q.split_model(keras.Model(inp, [e, f]), ["point"])


def test_quantize_array_rounds_half_away_from_zero():
    qp = Q.QParams(0.5, 0)
    assert Q.quantize_array(np.array([0.25, -0.25, 0.74, 100.0, -100.0]), qp).tolist() == [1, -1, 1, 127, -128]


# ------------------------------------------------------------------------------ run-level stages

@pytest.fixture(scope="module")
def run_dir(trained, tmp_path_factory):
    """A run directory as `tinyexit train` writes it, with the data splits served by a stand-in load_split."""
    from tinyexit.io import write_json
    from tinyexit.models import exits_with_macs
    model, _, _, _ = trained
    run = tmp_path_factory.mktemp("run")
    model.save(run / "model.keras")
    specs = exits_with_macs(model)
    write_json(run / "model.json", {"task": "kws", "input_shape": [49, 10, 1],
                                    "classes": [f"c{i}" for i in range(NUM_CLASSES)], "exits": specs,
                                    "data": {"kind": "test"}})
    return run


@pytest.fixture()
def splits(monkeypatch):
    data = {"train": make_data(300, 10), "validation": make_data(400, 11), "test": make_data(300, 12)}
    import tinyexit.run
    monkeypatch.setattr(tinyexit.run, "load_split", lambda run, split: data[split])
    return data


def test_quantize_run_writes_the_contract(run_dir, splits, trained):
    model, _, _, _ = trained
    rep = Q.quantize_run(run_dir, num_calibration=150)
    qdir = run_dir / "quant"
    man = json.loads((qdir / "manifest.json").read_text())
    assert [s["file"] for s in man["segments"]] == ["seg0.tflite", "seg1.tflite", "seg2.tflite"]
    assert [(e["name"], e["file"], e["after_segment"]) for e in man["exits"]] == \
        [("exit1", "exit1.tflite", 0), ("exit2", "exit2.tflite", 1), ("final", None, 2)]
    assert man["segments"][0]["input_shape"] == [49, 10, 1]
    assert man["classes"] == [f"c{i}" for i in range(NUM_CLASSES)]
    for k in range(2):
        seg_out = Q.tensor_qparams((qdir / f"seg{k}.tflite").read_bytes(), "output")
        assert Q.tensor_qparams((qdir / f"seg{k + 1}.tflite").read_bytes(), "input") == seg_out
        assert Q.tensor_qparams((qdir / f"exit{k + 1}.tflite").read_bytes(), "input") == seg_out
    assert rep["whole_model_check"] == {"inputs": 300, "identical": 300}
    # int8 accuracies against the whole int8 model run separately, float against Keras
    x, y = splits["test"]
    pipe = Run(run_dir).oracle()
    outs = pipe.run(x)
    fl = model.predict(x, verbose=0)
    for k, e in enumerate(rep["exits"]):
        assert e["int8_accuracy"] == pytest.approx(np.mean(np.argmax(outs[k], 1) == y))
        assert e["float_accuracy"] == pytest.approx(np.mean(np.argmax(fl[k], 1) == y))
    assert json.loads((qdir / "report.json").read_text())["evaluator"] == "tflite_micro"


@pytest.mark.parametrize("method", ["ltt", "crc"])
def test_calibrate_run_figures_recomputed_independently(run_dir, splits, method):
    from tinyexit.policy import MaxSoftmax, QParams, hb_p_value
    from tinyexit.policy.calibrate import calibrate_run
    if not (run_dir / "quant" / "manifest.json").exists():
        Q.quantize_run(run_dir, num_calibration=150, verify_whole=False)
    eps, delta = 0.1, 0.1
    pol = calibrate_run(run_dir, epsilon=eps, delta=delta, risk="gap", method=method)
    on_disk = json.loads((run_dir / "policy.json").read_text())
    assert on_disk == json.loads(json.dumps(pol))
    assert (run_dir / "calibration.png").stat().st_size > 5000
    man = json.loads((run_dir / "quant" / "manifest.json").read_text())
    qps = [QParams.of(e["output"]) for e in man["exits"]]
    macs = [e["macs_to_exit"] for e in man["exits"]]
    pipe = Run(run_dir).oracle()
    assert pol["threshold"] is not None, "the stand-in model should allow some early exits at eps = 0.1"
    policy = MaxSoftmax(pol["threshold"])
    assert pol["threshold_q"] == policy.threshold_q(qps[0])
    # test figures: the policy API on the int8 outputs, independently of calibrate's vectorised sweep
    xt, yt = splits["test"]
    res = policy.evaluate_q(pipe.run(xt), qps, macs)
    t = pol["test"]
    assert t["exit_rate"] == pytest.approx(res.exit_rate)
    assert t["accuracy"] == pytest.approx(res.accuracy(yt))
    assert t["mean_macs"] == pytest.approx(res.mean_macs)
    assert t["macs_saving"] == pytest.approx(1 - res.mean_macs / man["no_exit_macs"])
    # the certificate, recomputed input by input on the calibration split
    xv, yv = splits["validation"]
    outs = pipe.run(xv)
    final = np.argmax(outs[-1], 1)

    def cal_risk(code):
        r = MaxSoftmax(float(qps[0].dequantize(code))).evaluate_q(outs, qps, macs)
        early = r.exit_index < 2
        return np.mean(early & (r.decision != yv) & (final == yv))

    codes = range(127, pol["threshold_q"] - 1, -1)
    n = len(yv)
    if method == "ltt":
        assert all(hb_p_value(cal_risk(c), n, eps) <= delta for c in codes)
        if pol["threshold_q"] > -128:
            assert hb_p_value(cal_risk(pol["threshold_q"] - 1), n, eps) > delta
    else:  # crc on a single-exit-like monotone sweep: n/(n+1) R + 1/(n+1) <= eps up to the chosen code
        assert n / (n + 1) * cal_risk(pol["threshold_q"]) + 1 / (n + 1) <= eps
    assert pol["calibration_size"] == n and pol["method"] == method


def test_calibrate_without_quant_dir_says_what_to_run(tmp_path):
    from tinyexit.policy.calibrate import calibrate_run
    with pytest.raises(TinyexitError, match="tinyexit quantize"):
        calibrate_run(tmp_path)


def test_calibrate_command_passes_its_options_and_refuses_bad_ones(run_dir, splits, capsys):
    from tinyexit.cli import main
    if not (run_dir / "quant" / "manifest.json").exists():
        Q.quantize_run(run_dir, num_calibration=150, verify_whole=False)
    assert main(["calibrate", str(run_dir), "--method", "ucb", "--risk", "consistency", "--epsilon", "0.15",
                 "--delta", "0.2", "--policy", "margin"]) == 0
    pol = json.loads((run_dir / "policy.json").read_text())
    assert (pol["method"], pol["risk"], pol["epsilon"], pol["delta"], pol["policy"]) == \
        ("ucb", "consistency", 0.15, 0.2, "margin")
    assert "saving" in capsys.readouterr().out
    assert main(["calibrate", str(run_dir), "--epsilon", "1.5"]) == 2
    assert "--epsilon and --delta must lie strictly between 0 and 1" in capsys.readouterr().err


def residual_model():
    """ResNet-like stand-in: residual additions on both sides of the exit point, a head with a 1x1 conv."""
    import keras
    from keras import layers

    def block(x, name):
        y = layers.Conv2D(8, 3, padding="same", name=f"{name}_c1")(x)
        y = layers.BatchNormalization(name=f"{name}_bn")(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(8, 3, padding="same", name=f"{name}_c2")(y)
        return layers.ReLU(name=f"{name}_out")(layers.Add()([x, y]))

    inp = keras.Input((12, 12, 3))
    x = layers.ReLU()(layers.Conv2D(8, 3, padding="same")(inp))
    x = block(x, "stack1")
    h = layers.Conv2D(16, 1)(x)
    h = layers.DepthwiseConv2D(2, strides=2)(h)
    h = layers.AveragePooling2D(3)(h)
    e = layers.Softmax(name="exit1")(layers.Dense(5)(layers.Flatten()(h)))
    x = block(x, "stack2")
    f = layers.Softmax(name="final")(layers.Dense(5)(layers.GlobalAveragePooling2D()(x)))
    return keras.Model(inp, [e, f])


def test_residual_graph_splits_and_chains_bit_exactly():
    """Cutting the whole int8 graph is bit-exact on a residual network too (converting the pieces one by one
    is not there: the converter calibrates some tensors of a piece differently from the whole model)."""
    import keras
    keras.utils.set_random_seed(1)
    model = residual_model()
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 12, 12, 3)).astype(np.float32)
    y = (x[:, :6, :, 0].mean(axis=(1, 2)) > 0).astype(int) + 2 * (x[:, 6:, :, 1].mean(axis=(1, 2)) > 0)
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy"] * 2)
    model.fit(x, [y, y], epochs=1, batch_size=40, verbose=0)
    q = Q.quantize_model(model, ["stack1_out"], x[:100], method="cut")
    pipe = Q.Int8Pipeline(q["segments"], q["heads"], [0])
    test = rng.normal(size=(60, 12, 12, 3)).astype(np.float32)
    chained = pipe.run(test)
    ref = Q.TflmModel(Q.convert_int8(model, x[:100])).run(Q.quantize_array(test, pipe.input_qparams))
    for a, b in zip(chained, ref):
        assert a.tobytes() == b.reshape(60, -1).tobytes()
    assert len({r.tobytes() for r in chained[0]}) > 5


def test_find_boundary_names_the_exit_point_tensor_or_refuses(trained):
    model, points, x, _ = trained
    whole = Q.convert_int8(model, x[:50])
    _, sg = Q._subgraph(whole)
    outs = [int(sg.Outputs(i)) for i in Q.output_order(whole)]
    shape = model.get_layer(points[0]).output.shape[1:]
    t = Q.find_boundary(whole, points[0], shape, outs)
    assert f"/{points[0]}" in sg.Tensors(t).Name().decode()
    assert list(sg.Tensors(t).ShapeAsNumpy()) == [1, *shape]
    with pytest.raises(TinyexitError, match="cannot find the tensor of exit point"):
        Q.find_boundary(whole, "no_such_layer", shape, outs)
    with pytest.raises(TinyexitError, match="cannot find the tensor of exit point"):   # does not dominate exit1
        Q.find_boundary(whole, points[1], model.get_layer(points[1]).output.shape[1:], outs)


def test_an_incomplete_manifest_is_refused_with_the_fix(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"segments": [], "exits": [{"name": "final"}]}))
    with pytest.raises(TinyexitError, match="re-run `tinyexit quantize "):
        QuantDir(tmp_path).manifest()
